"""The sections' typed handles on Ctx (finetune/ui/context.py): all set once the page is built, none misspelt.

.venv/bin/pytest tests/ui/test_context.py -q
"""

from __future__ import annotations

import dataclasses

import pytest

SECTIONS = ("page", "dataset", "template", "tokens", "hparams", "run", "runs", "try_")


def test_every_section_handle_is_set_when_the_page_is_built(ctx) -> None:
    for section in SECTIONS:
        parts = getattr(ctx, section)
        for f in dataclasses.fields(parts):
            value = getattr(parts, f.name)
            assert value is not None and value != {}, f"ctx.{section}.{f.name} was never built"
    assert (
        set(ctx.tab) == {"dataset", "model", "tokens", "hparams", "run", "runs", "try"}
        and ctx.tabs is not None
    )


def test_a_misspelt_handle_is_an_error_not_a_new_attribute(ctx) -> None:
    with pytest.raises(AttributeError):
        ctx.run.wacth  # noqa: B018 - the read itself is the test
    with pytest.raises(AttributeError):
        ctx.hparams.sumary = None
    with pytest.raises(AttributeError):
        ctx.hparms = None
