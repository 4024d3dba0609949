"""The form with a user's own data, through the page's handlers (issue 8): what the task leaves out, what a
new dataset takes away, what the preview shows of empty cells.

    .venv/bin/pytest tests/ui/test_own_data.py -q

The browser walk of the same items is tests/e2e/test_walk_own_data.py.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from finetune import config as cfg
from finetune.ui import dataset_tab, tokens_tab
from ui.test_bad_input_page import handler


def test_classification_keeps_the_tokens_in_the_form_and_out_of_the_config(ctx, form: dict) -> None:
    b = ctx.binder
    chosen = {**form, b.component("task"): "classification"}
    raw = b.raw(chosen)
    assert "add" not in (raw.get("tokens") or {}) and "template" not in raw
    kept = b.raw(chosen, keep_unused=True)  # what a reload restores
    assert kept["tokens"]["add"] == ["<user_name>"] and kept["template"]["name"] == "llama3.1"
    assert b.raw(form)["tokens"]["add"] == ["<user_name>"]  # sft uses them again
    config, problems = b.validate({**chosen, b.component("dataset.path"): "builtin:sample-sentiment"})
    assert problems == [] and config.task == "classification" and config.tokens.add == []


def test_the_tokens_section_says_a_classification_task_adds_none(ctx, form: dict) -> None:
    d = {**form, ctx.binder.component("task"): "classification"}
    assert "1 token(s) below are kept" in tokens_tab.task_note(ctx, d)
    assert tokens_tab.task_note(ctx, form) == ""


def test_remove_takes_the_typed_name(page_ctx, form: dict) -> None:
    blocks, ctx = page_ctx
    p = ctx.tokens
    out = handler(blocks, "remove")({**form, p.remove_pick: [], p.new_token: "<user_name>"})
    assert tokens_tab.rows(out[p.table]) == [] and out[p.new_token] == ""


def test_empty_cells_show_empty_not_null() -> None:
    pv = {"columns": ["q", "memo"], "rows": [{"q": "a", "memo": None}, {"q": "b", "memo": "x"}]}
    frame = dataset_tab.preview_frame(pv, "en")["value"]
    assert isinstance(frame, pd.DataFrame) and list(frame["memo"]) == ["", "x"]


def test_own_data_takes_the_demo_token_away_unless_it_uses_it(ctx, form: dict, tmp_path: Path) -> None:
    b, p = ctx.binder, ctx.dataset
    plain, tagged = tmp_path / "plain.csv", tmp_path / "tagged.csv"
    plain.write_text("prompt,completion\nHi,Hello.\n", encoding="utf-8")
    tagged.write_text("prompt,completion\nHi <user_name>,Hello <user_name>.\n", encoding="utf-8")
    out = dataset_tab.load_preview(ctx, form, str(plain), "auto")
    assert tokens_tab.rows(out[b.component("tokens.add")]) == []
    assert "&lt;user_name&gt;" in str(out[p.source_note])  # named, HTML-escaped
    assert out[p.source] == "upload"
    out = dataset_tab.load_preview(ctx, form, str(tagged), "auto")
    assert b.component("tokens.add") not in out  # the data uses the token: it stays
    out = dataset_tab.load_preview(ctx, form, "builtin:sample-sentiment", "auto")
    assert b.component("tokens.add") not in out and out[p.source] == "builtin"  # a bundled sample
    assert cfg.DatasetConfig().path == "builtin:sample-chat"


def test_a_typed_path_or_a_picked_format_is_never_echoed_back(ctx, form: dict, tmp_path: Path) -> None:
    # The answer to the path's blur can arrive after the person has picked a format: it must not undo it.
    b, p = ctx.binder, ctx.dataset
    notes = tmp_path / "notes.txt"
    notes.write_text("one line of text\nanother line\n", encoding="utf-8")
    typed = {**form, b.component("task"): "text", b.component("dataset.path"): str(notes),
             b.component("dataset.format"): "txt"}  # fmt: skip
    out = dataset_tab.load_preview(ctx, typed, None, None)  # Enter or leaving the box
    for field in ("dataset.path", "dataset.format"):
        assert out[b.component(field)] == gr.skip(), field
    assert "another line" in out[p.preview]["value"].to_string()
    out = dataset_tab.load_preview(ctx, form, str(notes), "auto")  # a pick or an upload sets both
    assert out[b.component("dataset.path")] == str(notes) and out[b.component("dataset.format")] == "auto"
