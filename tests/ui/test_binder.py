"""The form binder: components <-> schema paths, what the form emits, and where problems are shown.

.venv/bin/pytest tests/ui/test_binder.py -q
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from finetune import config as cfg
from finetune import effective
from finetune.ui import binder as b
from finetune.ui import i18n

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = {path for path, _, _ in cfg.describe_fields()}


def set_field(ctx, form: dict, path: str, value) -> dict:
    return {**form, ctx.binder.component(path): value}


def test_every_bound_field_is_a_schema_path_with_a_label_in_both_languages(ctx) -> None:
    for name, f in ctx.binder.fields.items():
        for path in f.paths:
            assert path in SCHEMA or path.removeprefix("training.") in cfg.library_defaults(), path
        for lang in i18n.LANGS:
            assert i18n.field_label(lang, name) != name, f"{name} has no {lang} label"
            assert i18n.field_help(lang, name), f"{name} has no {lang} help"


def test_every_choice_in_the_page_is_the_schemas_literal(ctx) -> None:
    """A dropdown's or radio's choices are typing.get_args of the schema field ('auto' added where unset
    means automatic), so a value added to the schema appears in the page and nowhere needs editing."""
    checked = []
    for path, f in ctx.binder.fields.items():
        options = cfg.choices(path)
        if options is None:
            continue
        shown = [value for _, value in f.component.choices]
        extra = [] if "auto" in options or shown[:1] != ["auto"] else ["auto"]
        assert shown == [*extra, *options], path
        checked.append(path)
    # task, method, layout, format, dtype, train_on, init, pad, save_strategy, eval_strategy,
    # train_sampling_strategy, launch strategy (+ the column roles: the schema's ColumnMap, dataset_tab.ROLES)
    assert len(checked) == 12, checked


def test_slider_bounds_come_from_the_schema(ctx) -> None:
    slider = ctx.binder.component("lora.r")
    assert (slider.minimum, slider.maximum) == cfg.bounds("lora.r") == (1, 1024)


def test_the_page_starts_as_the_embedded_default(ctx, form) -> None:
    demo = cfg.load(ROOT / "presets" / "demo.yaml")
    built = cfg.from_dict(ctx.binder.raw(form))
    # The same run: every effective value equal (the form also writes out library defaults it shows).
    assert {v.path: v.value for v in effective.effective(built)} == {
        v.path: v.value for v in effective.effective(demo)
    }
    assert built.model_dump(mode="json", exclude={"training"}) == demo.model_dump(
        mode="json", exclude={"training"}
    )


def test_emits_only_what_differs_from_unset(ctx, form) -> None:
    raw = ctx.binder.raw(form)
    assert "model" not in raw  # the schema default (builtin:tiny-llama) is not repeated
    assert "weight_decay" not in raw["training"]  # advanced, still at the library default
    assert raw["training"]["learning_rate"] == 0.003  # shown in the main form: always written
    changed = set_field(ctx, form, "training.weight_decay", 0.1)
    changed = set_field(ctx, changed, "training.bf16", "off")
    changed = set_field(ctx, changed, "dataset.max_records", 0)  # 0 = all = unset
    raw = ctx.binder.raw(changed)
    assert raw["training"]["weight_decay"] == 0.1 and raw["training"]["bf16"] is False
    assert "max_records" not in raw["dataset"]


def test_tokens_table_sets_add_and_special(ctx, form) -> None:
    table = {"headers": ["token", "special"], "data": [["<a>", True], ["<b>", False], ["", False]]}
    raw = ctx.binder.raw({**form, ctx.binder.fields["tokens.add"].component: table})
    assert raw["tokens"] == {"add": ["<a>", "<b>"], "special": {"<a>": True, "<b>": False}}
    assert cfg.from_dict(raw).tokens.is_special("<b>") is False


def test_form_values_loads_a_config_into_the_form(ctx) -> None:
    values = ctx.binder.form_values(
        {
            "training": {"bf16": True, "learning_rate": 1e-4},
            "lora": {"target_modules": ["q_proj", "v_proj"]},
            "tokens": {"add": ["<x>"], "special": False},
        }
    )
    assert values[ctx.binder.component("training.bf16")] == "on"
    assert values[ctx.binder.component("lora.target_modules")] == "q_proj, v_proj"
    table = values[ctx.binder.fields["tokens.add"].component]
    assert list(table["token"]) == ["<x>"] and list(table["special"]) == [False]


@pytest.mark.parametrize(
    ("path", "value", "lang", "expected"),
    [
        ("training.learning_rate", 5.0, "en", "less than or equal to 1"),
        ("training.learning_rate", 5.0, "ja", "以下の値にしてください"),
        ("dataset.validation_split", 1.0, "ja", "より小さい値にしてください"),
        ("training.micro_batch_tokens", "lots", "en", "valid integer"),
    ],
)
def test_problems_come_back_next_to_their_field(ctx, form, path, value, lang, expected) -> None:
    config, problems = ctx.binder.validate(set_field(ctx, form, path, value))
    assert config is None and [p.path for p in problems] == [path]
    updates, shown = ctx.binder.problem_updates(problems, lang, [])
    assert shown == [path]
    update = updates[ctx.binder.component(path)]
    assert update["info"].startswith("⚠") and expected in update["info"]
    assert "tb-invalid" in update["elem_classes"]
    # Fixed: the help line comes back, in the user's language.
    updates, shown = ctx.binder.problem_updates([], lang, shown)
    assert shown == [] and updates[ctx.binder.component(path)]["info"] == i18n.field_help(lang, path)


def test_problem_owners(ctx) -> None:
    owner = ctx.binder.owner
    assert owner("tokens.add[0]").path == "tokens.add"
    assert owner("tokens.special").path == "tokens.add"
    assert owner("dataset.columns.prompt").path == "dataset.columns.prompt"
    assert owner("dataset.columns").path.startswith("dataset.columns.")
    assert owner("training").path.startswith("training.")
    assert owner("") is None
    # A custom template shows its problems on the template picker (a code box has no help line).
    f = ctx.binder.fields["template.custom"]
    assert f.error_target is ctx.binder.component("template.name")
    updates, shown = ctx.binder.problem_updates([b.Problem("template.custom", "bad")], "en", [])
    assert shown == ["template.name"] and ctx.binder.component("template.name") in updates


def test_whole_config_problems_are_placed_by_the_path_they_name(ctx, form) -> None:
    bad = set_field(ctx, form, "method", "lora")
    bad = set_field(ctx, bad, "training.weight_decay", 0.1)  # with tokens.add under LoRA: refused
    config, problems = ctx.binder.validate(bad)
    assert config is None
    assert [p.path for p in problems] == ["training.weight_decay"]


@pytest.mark.parametrize(
    ("convert", "ui", "config_value"),
    [
        ("tristate", "auto", None),
        ("tristate", "on", True),
        ("tristate", "off", False),
        ("auto", "auto", None),
        ("auto", "sdpa", "sdpa"),
        ("choice", "", None),
        ("int0", 0, None),
        ("int0", 5.0, 5),
        ("float0", 0.5, 0.5),
        ("names", "all-linear", "all-linear"),
        ("names", "q_proj, v_proj", ["q_proj", "v_proj"]),
        ("text", "  ", None),
        ("tokens", "auto", None),
        ("tokens", "off", 0),
        ("tokens", "2048", 2048),
        ("tokens", " 3,000 ", 3000),
        ("tokens", "lots", "lots"),  # the schema refuses it, naming the field
    ],
)
def test_converters(convert, ui, config_value) -> None:
    to_config, to_ui = b.CONVERTERS[convert]
    assert to_config(ui) == config_value
    if config_value is not None:
        assert to_config(to_ui(config_value)) == config_value


def test_dict_inputs_cover_the_form(ctx) -> None:
    form = ctx.form()
    assert set(ctx.binder.components) <= form and ctx.lang in form
    assert all(isinstance(c, gr.components.Component) for c in ctx.binder.components)
