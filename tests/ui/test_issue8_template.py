"""Section 2 (model and prompt format) through its real handlers, for issue 8: what the page says for each
task, the template a new model gets, the record counter, and records cut at max_length.

    .venv/bin/pytest tests/ui/test_issue8_template.py -q

The browser walk of the same items is tests/e2e/test_walk_runs.py.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from finetune import analysis, preflight
from finetune import config as cfg
from finetune.ui import i18n, template_switch, template_tab

ROOT = Path(__file__).resolve().parents[2]


def text(markup: str) -> str:
    """What a person reads in a piece of the page's HTML."""
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def analysed(ctx, d: dict) -> dict:
    """``d`` with the analysis the page computes for it (ctx.run_analysis, as a committed field runs it)."""
    return {**d, ctx.analysis: ctx.run_analysis(d)[ctx.analysis], ctx.template.model_kind: "instruct"}


@pytest.fixture
def classification(ctx, form: dict) -> dict:
    """The demo switched to the bundled sentiment table (task classification), its demo token removed."""
    b = ctx.binder
    d = {
        **form,
        b.component("task"): "classification",
        b.component("dataset.path"): "builtin:sample-sentiment",
        b.component("tokens.add"): None,
        ctx.template.record: 1,
    }
    return analysed(ctx, d)


def test_classification_says_no_template_and_no_token_loss(ctx, classification: dict) -> None:
    # Before: "was tuned with 'llama3.1', but 'None' is picked" and "0 carry loss", nothing about why.
    info, warnings, *_ = map(text, template_tab.info_and_warnings(ctx, classification)[:2])
    assert "None" not in warnings and "tuned with" not in warnings
    assert "classification head on top learns its label" in warnings and "No token carries loss" in warnings
    assert "none (task classification)" in info
    stats = text(template_tab.render(ctx, classification)[1])
    assert "record 1 of 200" in stats
    assert "a classification head learns it, so no token carries loss" in stats
    assert "label “positive”" in stats or "label “negative”" in stats or "label “neutral”" in stats
    ja = text(template_tab.info_and_warnings(ctx, {**classification, ctx.lang: "ja"})[1])
    assert "分類ヘッドがラベルを学びます" in ja and "None" not in ja


def test_a_new_model_gets_its_familys_template(ctx, form: dict) -> None:
    b, p = ctx.binder, ctx.template
    d = {
        **form,
        b.component("model.name_or_path"): "builtin:tiny-gemma",
        p.model_seen: "builtin:tiny-llama",
    }
    out = template_switch.switch_template(ctx, d)
    assert out[b.component("template.name")] == "gemma2" and out[p.model_seen] == "builtin:tiny-gemma"
    note = text(template_switch.switch_note(out[p.switch], "en"))
    assert "changed from 'llama3.1' to 'gemma2'" in note and "Gemma 2" in note
    ja = text(template_switch.switch_note(out[p.switch], "ja"))
    assert "'llama3.1' から 'gemma2' に切り替えました" in ja
    # Once the form shows something else (Reset, another pick), the note has nothing to say.
    assert template_switch.switch_note(out[p.switch], "en", "builtin:tiny-llama", "llama3.1") == ""
    # No new model (a blur, or the same pick): a template the user chose stays.
    same = {**d, b.component("template.name"): "chatml", p.model_seen: "builtin:tiny-gemma"}
    assert b.component("template.name") not in template_switch.switch_template(ctx, same)
    # 'auto', 'model' and 'custom' follow the model by themselves: left alone.
    auto = {**d, b.component("template.name"): "auto"}
    assert b.component("template.name") not in template_switch.switch_template(ctx, auto)


def test_the_mismatch_warning_asks_for_the_models_own_template(ctx, form: dict) -> None:
    b = ctx.binder
    d = analysed(ctx, {**form, b.component("template.name"): "chatml", b.component("tokens.add"): None})
    _, warnings, _, use_own, _ = template_tab.info_and_warnings(ctx, d)
    warnings = text(warnings)
    assert "Use 'llama3.1' (the button below)" in warnings and "Keep" not in warnings
    assert use_own["visible"] and use_own["value"] == "Use 'llama3.1'"
    assert template_tab.own_template(d[ctx.analysis]) == "llama3.1"


def test_the_record_counter_starts_at_one_and_clamps(ctx, form: dict) -> None:
    d = analysed(ctx, {**form, ctx.template.record: 1})
    pieces, stats, slider = template_tab.render(ctx, d)
    assert "record 1 of 300" in stats and slider["maximum"] == 300 and "value" not in slider
    _, stats, slider = template_tab.render(ctx, {**d, ctx.template.record: 12})
    assert "record 12 of 300" in stats and "value" not in slider  # what was typed stays in the box
    _, stats, slider = template_tab.render(ctx, {**d, ctx.template.record: 999})
    assert "record 300 of 300" in stats and slider["value"] == 300
    assert template_tab.render(ctx, {**d, ctx.template.record: None}) == (template_tab.gr.skip(),) * 3


def test_a_record_is_cut_exactly_when_section_1_counts_it(tiny_llama: str) -> None:
    config = cfg.load(ROOT / "presets" / "demo.yaml", {"dataset.max_length": 90})
    lengths = preflight.record_lengths(analysis.checked(config))
    for index in range(0, 300, 7):
        rec = analysis.render_record(config, index)
        assert rec["truncated"] == (lengths[index] > 90) and rec["full_tokens"] == lengths[index], index
        assert rec["tokens"] == min(lengths[index], 90)


def test_the_truncation_note_is_one_text_in_both_sections(ctx, form: dict) -> None:
    from finetune.ui import charts

    d = analysed(ctx, {**form, ctx.binder.component("dataset.max_length"): 90})
    lengths = d[ctx.analysis]["lengths"]
    section1 = charts.histogram(lengths, 90, "en")
    _, warnings, _, _, raise_button = template_tab.info_and_warnings(ctx, d)
    said = charts.esc(charts.truncation_text(lengths["truncation"], "en"))
    assert said in section1 and said in warnings
    assert "end-of-turn token, so the model learns replies that never stop" in said
    assert raise_button["visible"] and raise_button["value"] == "Raise max_length to 128"
    assert "records are longer than dataset.max_length" not in warnings  # not said twice


def test_llama_31s_header_is_explained_next_to_the_record(ctx, form: dict) -> None:
    d = analysed(ctx, {**form, ctx.template.record: 1})
    stats = text(template_tab.render(ctx, d)[1])
    assert "Cutting Knowledge Date: December 2023 / Today Date: 26 Jul 2024" in stats
    assert "A system prompt (above) goes after these lines" in stats


def test_the_system_turn_notes_say_where_the_text_goes_in_japanese() -> None:
    from finetune import templates

    for behaviour, said in (
        ("merge_into_first_user", "最初のユーザー発話の先頭に入ります(システムの文、空行、ユーザーの文の順)"),
        ("prepend_last_user", "最後のユーザー発話の先頭にだけ入ります"),
        ("preamble", "前置きの行の代わりに入ります"),
    ):
        where = templates._SYSTEM_BEHAVIOUR[behaviour]
        english = f"template 'x' has no system role: the system message will be {where}"
        assert said in i18n.problem("ja", english), behaviour
