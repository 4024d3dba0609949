"""Plain-language explanations of every config field, and a glossary, in English and Japanese.

    python -m finetune plan CONFIG.yaml --explain [--lang ja]

The texts are data, one file per language keyed by schema path: finetune/explain/en.yaml, ja.yaml. Each
field has ``what`` (what it does), and where it makes sense ``too_high``, ``too_low``, ``start`` (a starting
value for LoRA and for full fine-tuning) and ``math`` (the arithmetic). ``live`` lines put the current
values into that arithmetic (effective batch = 2 × 4 × 1 = 8). The page shows the same texts next to each
field; the README's schema table links here.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune.presets import load_yaml

TEXTS_DIR = Path(__file__).resolve().parent / "explain"
PARTS = ("what", "too_high", "too_low", "start", "math")
LANGS = ("en", "ja")


@functools.cache
def texts(lang: str) -> dict[str, Any]:
    """The whole file of one language (English for a language without one)."""
    path = TEXTS_DIR / f"{lang if lang in LANGS else 'en'}.yaml"
    return load_yaml(path.read_text(encoding="utf-8")) or {}


def entry(path: str, lang: str = "en") -> dict[str, str]:
    """The parts of one field's explanation, in PARTS order ({} when it has none)."""
    found = (texts(lang).get("fields") or {}).get(path) or {}
    return {part: found[part] for part in PARTS if found.get(part)}


def glossary(lang: str = "en") -> dict[str, str]:
    return dict(texts(lang).get("glossary") or {})


def heading(part: str, lang: str = "en") -> str:
    return str((texts(lang).get("parts") or {}).get(part) or part)


def live(path: str, numbers: dict[str, Any], lang: str = "en") -> str | None:
    """The field's arithmetic with the current ``numbers`` (:func:`arithmetic`), or None where it has none."""
    line = (texts(lang).get("live") or {}).get(path)
    return str(line).format(**numbers) if line else None


LIVE_INPUTS = {  # what the live lines are computed from (the page recomputes them when these change)
    "batch": "training.per_device_train_batch_size",
    "accumulation": "training.gradient_accumulation_steps",
    "r": "lora.r",
    "alpha": "lora.lora_alpha",
    "devices": "launch.num_processes",
}


def arithmetic(batch: int, accumulation: int, r: int, alpha: int, devices: int = 1) -> dict[str, Any]:
    """The numbers the live lines use."""
    effective = batch * accumulation * devices
    scale = f"{alpha / r:g}" if r else "–"
    return {"batch": batch, "accumulation": accumulation, "devices": devices, "effective": effective,
            "r": r, "alpha": alpha, "scale": scale}  # fmt: skip


def numbers(config: cfg.Config) -> dict[str, Any]:
    """:func:`arithmetic` of a config: its values, else the library defaults a run would get; one device per
    training process (launch.num_processes)."""
    lib, t = cfg.library_defaults(), config.training
    batch = t.per_device_train_batch_size or lib["per_device_train_batch_size"]
    accumulation = t.gradient_accumulation_steps or lib["gradient_accumulation_steps"]
    return arithmetic(batch, accumulation, config.lora.r, config.lora.lora_alpha, config.launch.num_processes)


def paragraphs(config: cfg.Config, lang: str = "en", paths: list[str] | None = None) -> list[str]:
    """Each field's explanation as one paragraph of text (``plan --explain``), headed by its current value."""
    out = []
    for path in paths or [p for p, _, _ in cfg.describe_fields()]:
        parts = entry(path, lang)
        if not parts:
            continue
        lines = [f"{path} = {_shown(config, path)}"]
        lines += [f"  {heading(part, lang)}: {text}" for part, text in parts.items()]
        now = live(path, numbers(config), lang)
        if now:
            lines.append(f"  {now}")
        out.append("\n".join(lines))
    return out


def _shown(config: cfg.Config, path: str) -> str:
    value = cfg.get_path(config.model_dump(mode="json"), path)
    if value is None and path.startswith("training."):
        default = cfg.library_defaults().get(path.removeprefix("training."))
        return f"{default!r} (library default)" if not _is_nan(default) else "unset"
    return repr(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
