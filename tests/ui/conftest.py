"""Form tests without a browser: the page is built once per session and its binder exercised directly.

.venv/bin/pytest tests/ui -q
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def page_ctx(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str):
    """(blocks, ctx) of the real page, built over an empty data directory."""
    from finetune.ui import page

    return page.build_with_ctx(Path(tmp_path_factory.mktemp("home")))


@pytest.fixture
def ctx(page_ctx):
    return page_ctx[1]


@pytest.fixture
def form(ctx) -> dict:
    """The form as the page first shows it: {component: value}, plus the language."""
    values = {f.component: f.component.value for f in ctx.binder.fields.values()}
    values[ctx.lang] = "en"
    values[ctx.shown] = []
    return values
