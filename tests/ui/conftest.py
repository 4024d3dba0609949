"""Form tests without a browser: the page is built once per session and its binder exercised directly.

.venv/bin/pytest tests/ui -q
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from conftest import free_port


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


@contextmanager
def placeholder_page(settings: Callable[[gr.Blocks], dict[str, Any]]) -> Iterator[tuple[gr.Blocks, str]]:
    """A one-line page served on a free loopback port with ``settings(blocks)`` as launch arguments (the
    dashboard's routes, login, limits...); yields (blocks, url) and closes the server afterwards."""
    with gr.Blocks() as demo:
        gr.Markdown("page")
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **settings(demo)
    )
    try:
        yield demo, f"http://127.0.0.1:{port}"
    finally:
        demo.close()


@contextmanager
def route_pages(routes: Callable[[gr.Blocks], list[Any]]) -> Iterator[Callable[..., str]]:
    """``start(**launch)``: a placeholder page with only ``routes(blocks)`` mounted beside it (the dashboard's
    TensorBoard or live route) and ``launch`` as further launch arguments; returns its URL. Every page
    started is closed at the end."""
    with ExitStack() as stack:

        def start(**launch: Any) -> str:
            settings = lambda demo: {"app_kwargs": {"routes": routes(demo)}, **launch}  # noqa: E731
            return stack.enter_context(placeholder_page(settings))[1]

        yield start
