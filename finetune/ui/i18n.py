"""UI strings in English and Japanese, read from locales/<lang>.yaml, and the registry that relabels the page.

    .venv/bin/pytest tests/ui -q

Why not ``gr.I18n`` alone (gradio 6.31): it translates constructor strings in the browser, from the browser's
locale, but the page also shows text built on the server (step counts, warnings, field errors with values),
which needs the language on the server. So the language is one value the page holds (a radio, remembered in
the browser), every string comes from the locale files, and switching re-labels the registered components.
English field help is the schema's own description (finetune/config.py), so it is written once.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from finetune import config as cfg

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANGS = {"en": "English", "ja": "日本語"}
DEFAULT_LANG = "en"


@cache
def catalog(lang: str) -> dict[str, Any]:
    if lang not in LANGS:
        return {}
    path = LOCALES_DIR / f"{lang}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def pick_lang(value: str | None, accept_language: str | None = None) -> str:
    """A stored choice if valid, else the browser's first supported language, else English."""
    if value in LANGS:
        return value
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return DEFAULT_LANG


@cache
def gradio_texts() -> dict[str, Any]:
    """Gradio's own texts that its dictionaries leave in English (locales/gradio.yaml), per language: for
    ``launch(i18n=gr.I18n(**gradio_texts()))`` and the status tracker's fixed words in locale.js."""
    return yaml.safe_load((LOCALES_DIR / "gradio.yaml").read_text(encoding="utf-8"))


def _lookup(lang: str, key: str) -> Any:
    node: Any = catalog(lang)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def t(lang: str, key: str, **values: Any) -> str:
    """The string ``key`` (dotted) in ``lang``, falling back to English, then to the key itself."""
    text = _lookup(lang, key)
    if text is None and lang != DEFAULT_LANG:
        text = _lookup(DEFAULT_LANG, key)
    if text is None:
        return key
    return str(text).format(**values) if values else str(text)


def t_md(lang: str, key: str, **values: Any) -> str:
    """``t`` for a gr.Markdown: the locale's own Markdown stays, each value shows as literal text.

    Numbers pass as they are (they carry no markup, and a locale may format them, e.g. ``{n:,}``).
    """
    from finetune.ui.charts import md_text  # not at the top: charts imports t from this module

    safe = {k: v if isinstance(v, (int, float)) else md_text(v) for k, v in values.items()}
    return t(lang, key, **safe)


def preset_text(lang: str, kind: str, name: str, part: str) -> str:
    """A preset's ``name`` or ``description`` in ``lang``: the locale's ``presets.<kind>.<name>`` entry, else
    the preset file's own (English) text."""
    from finetune import presets
    from finetune.errors import PresetError

    try:
        found = presets.load(kind, name)
    except PresetError:  # removed since the page listed it: its name still reads, the language still switches
        found = {}
    own = str(found.get(part) or (name if part == "name" else ""))
    return str(_lookup(lang, f"presets.{kind}.{name}.{part}") or own) if lang != DEFAULT_LANG else own


def _field_entry(lang: str, path: str) -> dict[str, Any]:
    return (catalog(lang).get("fields") or {}).get(path) or {}


def field_label(lang: str, path: str) -> str:
    """A field's label: the locale's translation, else the schema's ``title``."""
    return _field_entry(lang, path).get("label") or _schema_text(path, "title") or path


def field_help(lang: str, path: str) -> str:
    """One-line help: the locale's translation, else the schema's ``description``."""
    return _field_entry(lang, path).get("help") or _schema_text(path, "description") or ""


def _schema_text(path: str, attr: str) -> str | None:
    try:
        return getattr(cfg.field_info(path), attr)
    except KeyError:
        return None


def problem(lang: str, message: str, kind: str | None = None, ctx: dict[str, Any] | None = None) -> str:
    """An engine or validation message in ``lang``.

    Pydantic problems are translated by their type (``kind``) with their context values. Engine messages are
    free text: the locale's ``engine_errors`` patterns rewrite the common ones; any other keeps its English
    detail behind a translated lead, so the fix it names is never lost.
    """
    if lang == DEFAULT_LANG:
        return message
    if kind:
        template = _lookup(lang, f"validation.{kind}")
        if template:
            try:
                return str(template).format(**(ctx or {}))
            except (KeyError, IndexError):
                pass
    for rule in catalog(lang).get("engine_errors") or []:
        match = re.search(rule["pattern"], message)
        if match:
            return rule["text"].format(*match.groups(), **match.groupdict())
    return t(lang, "errors.untranslated", detail=message)


class Texts:
    """Components and the locale keys of their texts, so one call relabels the whole page."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, dict[str, Any]]] = []

    def add(self, component: Any, **attrs: Any) -> Any:
        """``attrs``: attribute -> locale key, or a function lang -> text (e.g. label=..., info=...)."""
        self.entries.append((component, attrs))
        return component

    @property
    def components(self) -> list[Any]:
        return [component for component, _ in self.entries]

    def resolve(self, lang: str, attrs: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for attr, key in attrs.items():
            if callable(key):
                out[attr] = key(lang)
            elif isinstance(key, list):  # choices: [(label key, value), ...]
                out[attr] = [(t(lang, k), v) for k, v in key]
            else:
                out[attr] = t(lang, key)
        return out

    def updates(self, lang: str) -> list[dict[str, Any]]:
        import gradio as gr

        return [gr.update(**self.resolve(lang, attrs)) for _, attrs in self.entries]
