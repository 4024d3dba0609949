"""Tests for finetune/config.py (the schema, YAML, overrides, sources) and finetune/effective.py.

    .venv/bin/python -m pytest tests/test_config.py -q

Pure Python: no model is loaded, nothing trains; effective() builds a real SFTConfig (no GPU needed).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finetune import config, effective
from finetune.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "presets" / "demo.yaml"


def problems(raw: dict, overrides: list[str] | None = None) -> list[tuple[str, str]]:
    """The (path, message) pairs that from_dict refuses ``raw`` with; fails the test if it accepts it."""
    with pytest.raises(ConfigError) as info:
        config.from_dict(raw, overrides)
    return info.value.problems


def effective_rows(cfg: Config, **device) -> dict[str, effective.Value]:
    return {row.path: row for row in effective.effective(cfg, **device)}


# ---------------------------------------------------------------- YAML and overrides


def test_load_reads_the_demo_yaml():
    cfg = config.load(DEMO)
    assert cfg.task == "sft" and cfg.method == "full"
    assert cfg.model.name_or_path == "builtin:tiny-llama"
    assert cfg.dataset.max_length == 256
    assert cfg.tokens.add == ["<user_name>"]
    assert cfg.training.learning_rate == pytest.approx(3e-3)
    assert cfg.training.save_strategy == "epoch"


def test_overrides_are_typed_in_both_spellings():
    cfg = config.load(
        DEMO,
        [
            "--training.learning_rate", "1e-4",
            "--dataset.path=x.csv",
            "--training.per_device_train_batch_size", "2",
            "--training.gradient_checkpointing", "true",
            "--tokens.add", '["<a>", "<b>"]',
        ],
    )  # fmt: skip
    assert cfg.training.learning_rate == pytest.approx(1e-4)
    assert isinstance(cfg.training.learning_rate, float)
    assert cfg.dataset.path == "x.csv"
    assert cfg.training.per_device_train_batch_size == 2
    assert cfg.training.gradient_checkpointing is True
    assert cfg.tokens.add == ["<a>", "<b>"]


def test_override_no_stays_a_word_for_literal_fields():
    # YAML 1.1 would read `no` as False; save_strategy takes the string "no".
    cfg = config.load(DEMO, ["--training.save_strategy", "no"])
    assert cfg.training.save_strategy == "no"


def test_override_that_is_not_yaml_stays_a_string():
    cfg = config.load(DEMO, ["--template.name", "custom", "--template.custom", "{% if %}"])
    assert cfg.template.custom == "{% if %}"


def test_override_flag_without_value_is_refused():
    with pytest.raises(ConfigError) as info:
        config.load(DEMO, ["--training.learning_rate"])
    assert info.value.problems[0][0] == "training.learning_rate"


def test_missing_config_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")


def test_invalid_yaml_file_is_a_config_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)


# ---------------------------------------------------------------- unknown and forbidden keys


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"modle": {"name_or_path": "x"}}, "modle"),
        ({"dataset": {"colums": {"prompt": "q"}}}, "dataset.colums"),
        ({"dataset": {"columns": {"promt": "q"}}}, "dataset.columns.promt"),
        ({"lora": {"rank": 8}}, "lora.rank"),
    ],
)
def test_unknown_keys_are_refused_with_their_path(raw: dict, path: str):
    found = problems(raw)
    assert [p for p, _ in found] == [path]
    assert "unknown key" in found[0][1]


def test_misspelled_training_key_suggests_the_library_name():
    [(path, msg)] = problems({"training": {"learning_rat": 1e-4}})
    assert path == "training.learning_rat"
    assert "learning_rate" in msg.split("did you mean")[-1]


def test_any_library_training_field_is_accepted():
    cfg = config.from_dict({"training": {"adam_beta2": 0.95, "dataloader_num_workers": 0}})
    assert cfg.training.model_extra == {"adam_beta2": 0.95, "dataloader_num_workers": 0}


@pytest.mark.parametrize(
    ("key", "why"),
    [("output_dir", "--run-dir"), ("hub_token", "HF_TOKEN"), ("logging_dir", "tensorboard")],
)
def test_forbidden_training_keys_are_refused_with_why(key: str, why: str):
    [(path, msg)] = problems({"training": {key: "x"}})
    assert path == f"training.{key}"
    assert "not accepted" in msg and why in msg


# ---------------------------------------------------------------- sources and to_yaml


def test_sources_tell_user_preset_and_default_apart():
    cfg = config.from_dict({"preset": "qlora_paper", "training": {"learning_rate": 1e-3}})
    assert cfg.source("training.learning_rate") == "user"
    assert cfg.training.learning_rate == pytest.approx(1e-3)  # the user's value beats the preset's
    assert cfg.source("training.max_grad_norm") == "preset:qlora_paper"
    assert cfg.training.max_grad_norm == pytest.approx(0.3)
    assert cfg.source("lora.r") == "preset:qlora_paper"
    assert cfg.source("training.seed") == "default"
    assert cfg.source("dataset.max_length") == "default"


def test_overrides_count_as_user_values():
    cfg = config.load(DEMO, ["--dataset.max_records", "5"])
    assert cfg.source("dataset.max_records") == "user"
    assert cfg.source("dataset.validation_split") == "default"


def test_to_yaml_round_trips(tmp_path: Path):
    cfg = config.load(DEMO, ["--training.learning_rate", "1e-4", "--training.adam_beta2", "0.95"])
    saved = tmp_path / "config.yaml"
    saved.write_text(cfg.to_yaml(), encoding="utf-8")
    again = config.load(saved)
    assert again.model_dump() == cfg.model_dump()
    assert again.training.model_extra == {"adam_beta2": 0.95}
    assert {p: again.source(p) for p in again._sources} == {p: cfg.source(p) for p in cfg._sources}


def test_to_yaml_references_the_preset_without_copying_it(tmp_path: Path):
    cfg = config.from_dict({"preset": "qlora_paper", "training": {"learning_rate": 1e-3}})
    text = cfg.to_yaml()
    assert yaml.safe_load(text) == {"preset": "qlora_paper", "training": {"learning_rate": 1e-3}}
    saved = tmp_path / "config.yaml"
    saved.write_text(text, encoding="utf-8")
    again = config.load(saved)
    assert again.model_dump() == cfg.model_dump()
    assert again.source("training.max_grad_norm") == "preset:qlora_paper"


def test_unknown_preset_is_a_config_error():
    [(path, msg)] = problems({"preset": "nope"})
    assert path == "preset"
    assert "qlora_paper" in msg  # lists the known ids


# ---------------------------------------------------------------- effective values


def test_effective_shows_library_defaults_with_their_source():
    rows = effective_rows(config.load(DEMO))
    optim = rows["training.optim"]
    assert optim.source.startswith("library:")
    assert optim.value  # the library's own choice, e.g. adamw_torch_fused
    assert rows["training.adam_beta1"].source.startswith("library:")
    assert rows["training.learning_rate"].value == pytest.approx(3e-3)
    assert rows["training.learning_rate"].source == "user"
    assert rows["dataset.max_length"].source == "user"
    assert rows["dataset.validation_split"].source == "default"
    assert "training.hub_token" not in rows  # never shown, even empty


def test_effective_derives_bf16_off_on_cpu():
    rows = effective_rows(config.load(DEMO), cuda=False, bf16_ok=False)
    assert rows["training.bf16"].value is False
    assert rows["training.bf16"].source.startswith("tuneboard")
    assert rows["training.use_cpu"].value is True


def test_bf16_is_derived_on_where_the_gpu_has_it():
    # training_kwargs, not effective(): SFTConfig itself refuses bf16 on this CPU-only machine.
    kw = effective.training_kwargs(config.load(DEMO), cuda=True, bf16_ok=True, has_eval=False)
    assert kw["bf16"].value is True
    assert kw["bf16"].source.startswith("tuneboard")
    assert "use_cpu" not in kw


def test_effective_maps_warmup_ratio_to_warmup_steps():
    rows = effective_rows(config.load(DEMO))  # demo: warmup_ratio 0.05
    assert rows["training.warmup_steps"].value == pytest.approx(0.05)
    assert "warmup_ratio" in rows["training.warmup_steps"].source
    assert rows["training.warmup_steps"].source.startswith("user")
    assert "training.warmup_ratio" not in rows or rows["training.warmup_ratio"].value in (None, 0, 0.0)


def test_effective_max_length_comes_from_the_dataset_section():
    rows = effective_rows(config.load(DEMO, ["--dataset.max_length", "128"]))
    assert rows["training.max_length"].value == 128
    assert "dataset.max_length" in rows["training.max_length"].source


@pytest.mark.parametrize("field", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_is_refused_naming_the_field(field: str):
    cfg = config.load(DEMO, [f"--training.{field}", "true"])
    with pytest.raises(ConfigError) as info:
        effective.effective(cfg, cuda=False, bf16_ok=False)
    assert [p for p, _ in info.value.problems] == [f"training.{field}"]


# ---------------------------------------------------------------- value checks


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("training.learning_rate", -1e-4),
        ("training.per_device_train_batch_size", 0),
        ("training.num_train_epochs", 0),
        ("lora.r", 0),
        ("dataset.max_length", 4),
    ],
)
def test_out_of_range_values_name_the_path_and_the_value(key: str, value: float):
    [(path, msg)] = problems({}, [f"--{key}", str(value)])
    assert path == key
    assert repr(value) in msg


def test_weight_decay_with_new_tokens_under_lora_is_refused():
    raw = {"method": "lora", "tokens": {"add": ["<x>"]}, "training": {"weight_decay": 0.01}}
    [(path, msg)] = problems(raw)
    assert path == "training.weight_decay"
    assert "tokens.add" in msg
    # Each half alone is fine, and so is the full method (every row trains anyway).
    config.from_dict({**raw, "tokens": {"add": []}})
    config.from_dict({**raw, "training": {"weight_decay": 0.0}})
    config.from_dict({**raw, "method": "full"})


def test_new_tokens_for_classification_are_refused():
    [(path, _)] = problems({"task": "classification", "tokens": {"add": ["<x>"]}})
    assert path == "tokens.add"


@pytest.mark.parametrize(("tokens", "path"), [([""], "tokens.add[0]"), (["<a>", " <b>"], "tokens.add[1]")])
def test_blank_tokens_are_refused_by_the_schema(tokens: list[str], path: str):
    [(found, msg)] = problems({"tokens": {"add": tokens}})
    assert found == path
    assert "empty or has surrounding spaces" in msg


def test_several_problems_come_back_together():
    found = problems({"training": {"learning_rate": -1, "per_device_train_batch_size": 0}, "foo": 1})
    assert {p for p, _ in found} == {
        "training.learning_rate",
        "training.per_device_train_batch_size",
        "foo",
    }


# ---------------------------------------------------------------- descriptions


def test_every_field_has_a_description():
    rows = config.describe_fields()
    paths = [path for path, _, _ in rows]
    assert {"model.name_or_path", "dataset.max_length", "tokens.add", "training.learning_rate"} <= set(paths)
    assert len(paths) == len(set(paths))
    missing = [path for path, desc, _ in rows if len(desc.strip()) < 10]
    assert missing == []


def test_describe_fields_reports_schema_defaults():
    defaults = {path: default for path, _, default in config.describe_fields()}
    assert defaults["dataset.max_length"] == 1024
    assert defaults["method"] == "lora"
    assert defaults["training.learning_rate"] is None  # unset = the library's default
