"""Every shipped preset is valid: hyperparameter sets, model families, templates, the demo config.

    .venv/bin/python -m pytest tests/test_presets.py -q

A preset is data that a user picks from a list, so each one is loaded through the same code a run uses.
"""

from __future__ import annotations

import pytest

from finetune import config, presets, templates
from finetune.presets import PRESETS_DIR

HPARAMS = presets.names("hparams")
MODELS = presets.names("models")
TEMPLATES = presets.names("templates")
MODEL_KEYS = (
    "template",
    "model_types",
    "special_tokens",
    "stop_tokens",
    "lora_target_modules",
    "tied_embeddings",
)


def test_each_kind_ships_presets():
    assert "qlora_paper" in HPARAMS and "balanced_lora" in HPARAMS
    assert {"gemma2", "llama3.1"} <= set(MODELS)
    assert {"gemma2", "llama3.1", "chatml"} <= set(TEMPLATES)


@pytest.mark.parametrize("preset_id", HPARAMS)
def test_hparams_preset_merges_into_a_valid_config(preset_id: str):
    meta = presets.load("hparams", preset_id)
    assert isinstance(meta.get("name"), str) and meta["name"].strip()
    description = meta.get("description")
    assert isinstance(description, str) and description.strip()
    assert "\n" not in description.strip()  # one line: it is shown beside the name in a list
    assert isinstance(meta.get("values"), dict) and meta["values"]
    cfg = config.from_dict({"preset": preset_id})
    for path in config.flatten(meta["values"]):
        assert cfg.source(path) == f"preset:{preset_id}", path
    # Every training key is a real library field, typed by the schema or accepted as a library extra.
    assert set(cfg.training.model_extra or {}) <= config.library_fields()


@pytest.mark.parametrize("preset_id", HPARAMS)
def test_hparams_preset_keeps_user_values_on_top(preset_id: str):
    cfg = config.from_dict({"preset": preset_id, "training": {"learning_rate": 0.5}})
    assert cfg.training.learning_rate == 0.5
    assert cfg.source("training.learning_rate") == "user"


def test_qlora_preset_has_the_paper_values():
    cfg = config.from_dict({"preset": "qlora_paper"})
    assert cfg.method == "qlora"
    assert cfg.training.learning_rate == pytest.approx(2e-4)
    assert cfg.training.max_grad_norm == pytest.approx(0.3)
    assert cfg.training.warmup_ratio == pytest.approx(0.03)
    # The paper warms up for 3% then holds the rate; transformers' "constant" ignores warmup entirely.
    assert cfg.training.lr_scheduler_type == "constant_with_warmup"
    assert cfg.lora.r == 64


@pytest.mark.parametrize("family_id", MODELS)
def test_model_family_preset_is_complete(family_id: str):
    fam = presets.load("models", family_id)
    missing = [key for key in MODEL_KEYS if key not in fam]
    assert missing == []
    assert fam["template"] in TEMPLATES
    templates.load(fam["template"])  # resolves and compiles
    assert isinstance(fam["model_types"], list) and fam["model_types"]
    assert isinstance(fam["special_tokens"], list) and fam["special_tokens"]
    assert isinstance(fam["stop_tokens"], list) and fam["stop_tokens"]
    assert isinstance(fam["lora_target_modules"], list) and fam["lora_target_modules"]
    assert isinstance(fam["tied_embeddings"], bool)
    assert fam.get("name") and fam.get("description")
    assert set(fam["stop_tokens"]) & set(templates.load(fam["template"]).meta.get("stop_tokens", []))


@pytest.mark.parametrize("template_id", TEMPLATES)
def test_template_preset_has_source_and_metadata(template_id: str):
    template = templates.load(template_id)
    assert template.source.strip()
    assert template.meta.get("name") and template.meta.get("description")
    assert templates.has_generation_markers(template.source)
    assert (PRESETS_DIR / "templates" / f"{template_id}.jinja").is_file()


def test_demo_yaml_loads():
    cfg = config.load(PRESETS_DIR / "demo.yaml")
    assert cfg.model.name_or_path.startswith("builtin:")
    assert cfg.dataset.path.startswith("builtin:")
    assert cfg.template.name in TEMPLATES
    assert cfg.preset is None or cfg.preset in HPARAMS


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(presets.PresetError) as info:
        presets.load("hparams", "nope")
    for preset_id in HPARAMS:
        assert preset_id in str(info.value)
