"""Find and read the data files under ``presets/`` (templates, model families, hyperparameter sets).

    python -c "from finetune import presets; print(presets.names('templates'))"

Presets are data, never code: this module only lists, reads and validates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
KINDS = ("templates", "models", "hparams")


class PresetError(ValueError):
    """A preset that does not exist or does not parse."""


def names(kind: str) -> list[str]:
    """Ids of the presets of one kind, sorted (the file stem is the id)."""
    _check_kind(kind)
    return sorted(p.stem for p in (PRESETS_DIR / kind).glob("*.yaml"))


def load(kind: str, name: str) -> dict[str, Any]:
    """The metadata of one preset as a dict, with ``id`` set to its name."""
    _check_kind(kind)
    path = PRESETS_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(names(kind)) or "none"
        raise PresetError(f"unknown {kind} preset {name!r}; known: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping at the top level")
    return {"id": name, **data}


def read_text(kind: str, filename: str) -> str:
    """The text of a file that sits beside a preset (e.g. ``templates/gemma2.jinja``)."""
    _check_kind(kind)
    path = PRESETS_DIR / kind / filename
    if not path.is_file():
        raise PresetError(f"missing preset file {kind}/{filename}")
    return path.read_text(encoding="utf-8")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PresetError(f"unknown preset kind {kind!r}; expected one of {KINDS}")
