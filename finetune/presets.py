"""Find and read the data files under ``presets/`` (templates, model families, hyperparameter sets).

    python -c "from finetune import presets; print(presets.names('templates'))"

Presets are data, never code: this module only lists, reads and validates them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from finetune.errors import PresetError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
KINDS = ("templates", "models", "hparams")


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. In YAML 1.1 `save_strategy: no` would silently become False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Yaml12Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )
# YAML 1.2 floats: `1e-4` is a number (YAML 1.1 wants `1.0e-4` and reads `1e-4` as a string).
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
for _first in "-+0123456789.":
    _Yaml12Loader.yaml_implicit_resolvers.setdefault(_first, []).append(("tag:yaml.org,2002:float", _FLOAT))


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


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
    data = load_yaml(path.read_text(encoding="utf-8")) or {}
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
