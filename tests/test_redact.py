"""Hugging Face tokens never reach what a person reads: finetune/redact.py on logs on disk and in the page.

.venv/bin/pytest tests/test_redact.py -q
"""

from __future__ import annotations

import io

import pytest

from finetune import redact, train

TOKEN = "hf_" + "AbCd1234" * 4 + "xy"


def test_the_token_shape_and_the_environment_values_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact.redact(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer hf_***"
    monkeypatch.setenv("HF_TOKEN", "not-hf-shaped-secret")
    assert redact.redact("token=not-hf-shaped-secret") == "token=hf_***"
    monkeypatch.setenv("HF_TOKEN", "short")  # too short to replace safely inside ordinary words
    assert redact.redact("a short story") == "a short story"


def test_the_trainers_output_streams_redact_before_writing() -> None:
    out, log = io.StringIO(), io.StringIO()
    stream = train._Redacting(out, log)
    stream.write(f"loading with token {TOKEN}\n")
    assert TOKEN not in out.getvalue() + log.getvalue() and "hf_***" in log.getvalue()


def test_a_config_holding_a_token_is_refused_with_the_field() -> None:
    from finetune import config

    with pytest.raises(config.ConfigError) as info:
        config.from_dict({"template": {"system_prompt": f"use {TOKEN}"}})
    assert info.value.problems[0][0] == "template.system_prompt"
    assert "HF_TOKEN" in info.value.problems[0][1]
    assert config.from_dict({"dataset": {"path": "data/hf_datasets/x.csv"}})  # not a token: accepted
