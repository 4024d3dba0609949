"""The page where it is hosted (finetune/hosting.py): what gradio does differently on a Space's hardware.

.venv/bin/pytest tests/ui/test_hosting_page.py -q
"""

from __future__ import annotations

import pytest


def test_on_zero_gpu_the_pages_events_still_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio caps an unset queue at one waiting event on ZeroGPU: the page's load events (the analysis, the
    run on screen) were dropped and the page never filled in (seen in tests/e2e/test_space_page.py)."""
    import gradio as gr

    from finetune import ui

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    plain, ours = gr.Blocks(), gr.Blocks()
    assert plain.queue()._queue.max_size == 1  # gradio's own cap, the cause
    assert ui.queue(ours)._queue.max_size == ui.QUEUE_SIZE
