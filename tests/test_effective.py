"""Tests for finetune/effective.py: what the trainer's arguments get, and under which names.

.venv/bin/pytest tests/test_effective.py -q
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from finetune import config, effective

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "presets" / "demo.yaml"


def test_gradient_checkpointing_reaches_the_library_by_its_current_name(tiny_llama: str):
    """transformers 5 warns on training.gradient_checkpointing (TRL sets it by default): it gets the new
    name, activation_checkpointing, and the config keeps the seed's."""
    for given, expected in ((None, False), (False, False), (True, True)):  # unset: fits, off (speed.py)
        cfg = config.load(DEMO, {"training.gradient_checkpointing": given})
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            args = effective.training_args(cfg, "RUN_DIR", cuda=False, bf16_ok=False, has_eval=False)
        assert args.activation_checkpointing is expected and args.gradient_checkpointing is expected
    clash = {"training.gradient_checkpointing": True, "training.activation_checkpointing": False}
    with pytest.raises(config.ConfigError, match="training.activation_checkpointing is set too"):
        effective.training_args(
            config.load(DEMO, clash), "RUN_DIR", cuda=False, bf16_ok=False, has_eval=False
        )
