"""finetune/explain.py and finetune/explain/*.yaml: every field explained in plain words, in both languages.

.venv/bin/pytest tests/test_explain.py -q
"""

from __future__ import annotations

import string

import pytest
from conftest import ROOT, run_cli

from finetune import config, explain

PATHS = [path for path, _, _ in config.describe_fields()]
# The list: each of these says what it does, what goes wrong too high and too low, where to start.
FULL = [
    "training.learning_rate", "training.num_train_epochs", "training.per_device_train_batch_size",
    "training.gradient_accumulation_steps", "training.max_steps", "training.lr_scheduler_type",
    "training.warmup_ratio", "training.weight_decay", "training.max_grad_norm", "training.bf16",
    "training.fp16", "training.tf32", "training.gradient_checkpointing", "training.optim", "lora.r",
    "lora.lora_alpha", "lora.lora_dropout", "lora.target_modules", "method", "dataset.max_length",
    "template.train_on", "tokens.add", "tokens.special", "tokens.init", "tokens.pad",
]  # fmt: skip


@pytest.mark.parametrize("lang", explain.LANGS)
def test_every_schema_field_is_explained_and_no_entry_names_a_missing_one(lang: str) -> None:
    fields = explain.texts(lang)["fields"]
    assert sorted(set(PATHS) - set(fields)) == [], "fields without an explanation"
    assert sorted(set(fields) - set(PATHS)) == [], "explanations of fields the schema does not have"
    for path in FULL:
        assert set(explain.entry(path, lang)) >= {"what", "too_high", "too_low", "start"}, path
    assert set(explain.texts(lang)["live"]) <= set(PATHS)


def test_both_languages_have_the_same_parts_and_glossary() -> None:
    en, ja = explain.texts("en"), explain.texts("ja")
    for path in PATHS:
        assert set(en["fields"][path]) == set(ja["fields"][path]), path
    assert set(en["glossary"]) == set(ja["glossary"]) and len(en["glossary"]) >= 11
    assert set(en["parts"]) == set(ja["parts"]) == set(explain.PARTS)
    for path, line in en["live"].items():
        names = {n for _, n, _, _ in string.Formatter().parse(line) if n}
        assert names == {n for _, n, _, _ in string.Formatter().parse(ja["live"][path]) if n}, path
        assert names <= set(explain.arithmetic(2, 4, 16, 32)), path


def test_the_arithmetic_uses_the_configs_numbers() -> None:
    cfg = config.from_dict({"training": {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4}})
    line = explain.live("training.gradient_accumulation_steps", explain.numbers(cfg))
    assert line == (
        "With your values: effective batch = 2 × 4 × 1 device(s) = 8 records per optimizer update."
    )
    cfg = config.from_dict({"lora": {"r": 64, "lora_alpha": 32}})
    assert "32 / 64 = 0.5" in explain.live("lora.r", explain.numbers(cfg), "ja")


def test_plan_explains_every_field_as_a_paragraph_in_japanese() -> None:
    result = run_cli("plan", str(ROOT / "presets" / "demo.yaml"), "--explain", "--lang", "ja")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    rate = next(p for p in text.split("\n\n") if p.startswith("training.learning_rate = "))
    assert "大きすぎると" in rate and "小さすぎると" in rate and "最初の値" in rate
    accumulation = next(p for p in text.split("\n\n") if p.startswith("training.gradient_accumulation_steps"))
    assert "実効バッチ = 8 × 1 × 1 デバイス" in accumulation  # the demo's batch 8, accumulation unset = 1
    assert sum(p.split(" = ")[0] in PATHS for p in text.split("\n\n")) == len(PATHS)
