"""What the page shows before a run, asked of the analysis process (finetune/analyst.py).

    .venv/bin/pytest tests/ui/test_previews.py -q

Each function here is finetune/analysis.py's of the same name, computed in that process, so the dashboard's
own process never imports torch, transformers or TRL. Values are plain data; an engine error comes back as
the same TuneboardError, which the page shows next to its field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune import analyst
from finetune import config as cfg
from finetune.analysis import key_of

__all__ = ["key_of"]  # pure: the page keys its own state on it

_ANALYST = analyst.Analyst()


def analyze(config: cfg.Config) -> dict[str, Any]:
    return _ANALYST.call("analyze", config)


def summary(
    config: cfg.Config, records: int, mean_tokens: float = 0.0, longest: int | None = None
) -> dict[str, Any]:
    return _ANALYST.call("summary", config, records, mean_tokens, longest)


def count_every_record(config: cfg.Config) -> None:
    _ANALYST.call("count_every_record", config)


def every_record_state(key: str) -> dict[str, Any] | None:
    return _ANALYST.call("every_record_state", key)


def dataset_preview(dataset: cfg.DatasetConfig, rows: int = 20) -> dict[str, Any]:
    return _ANALYST.call("dataset_preview", dataset, rows)


def render_record(config: cfg.Config, index: int) -> dict[str, Any]:
    return _ANALYST.call("render_record", config, index)


def tokenize_compare(config: cfg.Config, text: str) -> dict[str, list[dict[str, Any]]]:
    return _ANALYST.call("tokenize_compare", config, text)


def scan_token_like(config: cfg.Config, limit: int = 5000) -> list[dict[str, Any]]:
    return _ANALYST.call("scan_token_like", config, limit)


def unused_tokens(config: cfg.Config) -> list[str]:
    return _ANALYST.call("unused_tokens", config)


def family_of(model: cfg.ModelConfig) -> dict[str, Any] | None:
    return _ANALYST.call("family_of", model)


def effective_config(config: cfg.Config) -> dict[str, Any]:
    return _ANALYST.call("effective_config", config)


def run_files(config: cfg.Config) -> dict[str, str]:
    return _ANALYST.call("run_files", config)


def check_again(run_dir: Path) -> None:
    _ANALYST.call("check_again", str(run_dir))
