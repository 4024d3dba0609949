"""The form binder: each input component is bound to one schema path (``training.learning_rate``).

    .venv/bin/pytest tests/ui/test_binder.py -q

``Binder.field(path, gr.Slider, minimum=1, ...)`` creates the component with its label and one-line help from
the locale files (English help = the schema's description), its starting value from the initial config, and
registers it. The page then reads the whole form as one dict (Gradio's dict-keyed inputs) and
:meth:`Binder.raw` turns it into the nested YAML mapping that ``finetune.config.from_dict`` validates, so the
page, the YAML and the CLI share the schema. What is emitted: a schema field whose value differs from the
schema default, and every ``training.*`` field that holds a value (an empty one keeps the library default).
Validation problems come back with their path; :meth:`Binder.problem_updates` puts each next to its field.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from finetune import config as cfg
from finetune import explain, paths
from finetune.errors import ConfigError, Problem
from finetune.ui import i18n

UNSET = object()
AUTO = "auto"


def problem_text(problem: Problem, lang: str) -> str:
    """A problem's message in ``lang`` (translated by its pydantic type where it has one)."""
    return i18n.problem(lang, problem.message, problem.kind, problem.ctx)


# ---------------------------------------------------------------- converters: UI value <-> config value


def _text(value: Any) -> Any:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _auto(value: Any) -> Any:
    return None if value in (None, "", AUTO) else value


def _tristate(value: Any) -> bool | None:
    return {"on": True, "off": False}.get(value)


def _tristate_ui(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, AUTO)


def _number(value: Any) -> Any:
    if value is None or value == "":
        return None
    number = float(value)
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(round(float(value)))


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _zero_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """gr.Number cannot be empty (gradio 6.31 sends 0 for None): 0 means "unset" where 0 is invalid."""
    return lambda value: None if not value else convert(value)


def _tokens(value: Any) -> Any:
    """A token budget from a dropdown that also takes a typed number: auto = unset, off = 0; text that is
    not a number goes on as it is, for the schema to refuse with the field's name."""
    text = _auto(_text(value))
    if text is None or text == "off":
        return None if text is None else 0
    try:
        return int(text.replace(",", ""))
    except ValueError:
        return text


def _tokens_ui(value: Any) -> str:
    return {None: AUTO, 0: "off"}.get(value, str(value))


def _names(value: Any) -> Any:
    """'all-linear' stays a string; 'q_proj, v_proj' becomes a list."""
    text = _text(value)
    if text is None or "," not in text:
        return text
    return [part.strip() for part in text.split(",") if part.strip()]


def _names_ui(value: Any) -> str:
    return ", ".join(value) if isinstance(value, list) else (value or "")


CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "plain": (lambda v: v, lambda v: v),
    "text": (_text, lambda v: "" if v is None else str(v)),
    "auto": (_auto, lambda v: AUTO if v is None else v),
    "choice": (_auto, lambda v: "" if v is None else v),  # '' = no column / none
    "tristate": (_tristate, _tristate_ui),
    "int": (_int, lambda v: v),
    "float": (_float, lambda v: v),
    "int0": (_zero_none(_int), lambda v: v or 0),
    "float0": (_zero_none(_float), lambda v: v or 0),
    "names": (_names, _names_ui),
    "tokens": (_tokens, _tokens_ui),
}


@cache
def schema_defaults() -> dict[str, Any]:
    return {path: default for path, _, default in cfg.describe_fields()}


# ---------------------------------------------------------------- the binder


@dataclass
class Field:
    path: str
    component: Any
    to_config: Callable[[Any], Any]
    to_ui: Callable[[Any], Any]
    default: Any
    paths: tuple[str, ...] = ()
    error_target: Any = None
    help: bool = True  # whether the component shows help text (info) that errors may replace
    fallback: Any = None  # what the component shows while its path is unset


@dataclass
class Binder:
    texts: i18n.Texts
    initial: dict[str, Any]  # nested config values the form starts from
    access: paths.Access = field(default_factory=paths.Access)  # which typed paths the page may open
    fields: dict[str, Field] = field(default_factory=dict)
    explanations: dict[str, Any] = field(default_factory=dict)  # path -> the gr.HTML explaining it

    # -- building

    def field(
        self,
        path: str,
        cls: Any,
        *,
        convert: str = "plain",
        fallback: Any = UNSET,
        unset: Any = UNSET,
        **kwargs: Any,
    ) -> Any:
        """Create ``cls(label=..., info=..., value=..., **kwargs)`` bound to ``path`` and return it.

        ``fallback``: the value shown when the initial config leaves the field unset (for ``training.*``,
        pass the library default so a slider has a number to show). ``unset``: the config value that is
        not emitted (default: the schema default; None for ``training.*``, so a value there is always set).
        """
        to_config, to_ui = CONVERTERS[convert]
        kwargs = _from_schema(path, cls, convert, kwargs)
        value = self._initial(path)
        if value is None and fallback is not UNSET:
            value = fallback
        show_help = kwargs.pop("show_help", True)
        error_target = kwargs.pop("error_target", None)
        component = self._labelled(path, cls, to_ui(value), show_help, kwargs)
        default = self._default(path) if unset is UNSET else unset
        shown_unset = schema_defaults().get(path) if fallback is UNSET else fallback
        self.fields[path] = Field(
            path,
            component,
            to_config,
            to_ui,
            default,
            (path,),
            error_target or component,
            show_help,
            shown_unset,
        )
        return component

    def _labelled(self, path: str, cls: Any, value: Any, show_help: bool, kwargs: dict[str, Any]) -> Any:
        """``cls(label=..., info=..., value=value, **kwargs)`` for ``path``: its label and help in the default
        language, registered to follow a language switch, and its explanation below where it has one."""
        label = i18n.field_label(i18n.DEFAULT_LANG, path)
        texts: dict[str, Any] = {"label": lambda lang: i18n.field_label(lang, path)}
        if show_help:
            kwargs["info"] = i18n.field_help(i18n.DEFAULT_LANG, path)
            texts["info"] = lambda lang: i18n.field_help(lang, path)
        classes = ["tb-field", *([kwargs.pop("elem_classes")] if "elem_classes" in kwargs else [])]
        with self._explained(path, show_help, kwargs):
            component = cls(label=label, value=value, elem_classes=classes, **kwargs)
        self.texts.add(component, **texts)
        return component

    @contextmanager
    def _explained(self, path: str, show: bool, kwargs: dict[str, Any]) -> Iterator[None]:
        """A field with a plain-words explanation (finetune/explain/) gets it right below, folded, the two
        in a column of their own so a row of fields keeps its shape."""
        if not (show and explain.entry(path)):
            yield
            return
        import gradio as gr

        scale, width = kwargs.get("scale", 1), kwargs.get("min_width", 160)
        with gr.Column(scale=scale, min_width=width, elem_classes=["tb-explained"]):
            yield
            numbers = self.initial_numbers if path in LIVE_PATHS else None
            box = gr.HTML(explanation_html(path, i18n.DEFAULT_LANG, numbers), elem_classes=["tb-why"])
        self.explanations[path] = box
        if path not in LIVE_PATHS:  # a live one is redrawn with the form's numbers (hparams_tab)
            self.texts.add(box, value=lambda lang: explanation_html(path, lang))

    @cached_property
    def initial_numbers(self) -> dict[str, Any] | None:
        """The live arithmetic of the config the form starts from (None if it does not validate); validated
        once, however many explanations show it."""
        try:
            return explain.numbers(cfg.from_dict(self.initial))
        except ConfigError:
            return None

    def live_numbers(self, values: dict[Any, Any]) -> dict[str, Any] | None:
        """The live arithmetic of the form's current values, read from the fields themselves (a form that
        does not validate elsewhere still shows its effective batch)."""
        try:
            got = {name: int(values[self.component(path)]) for name, path in explain.LIVE_INPUTS.items()}
        except (KeyError, TypeError, ValueError):
            return None
        return explain.arithmetic(**got)

    def custom(
        self,
        name: str,
        component: Any,
        *,
        paths: tuple[str, ...],
        to_config: Callable[[Any], dict],
        to_ui: Callable[[dict], Any],
        error_target: Any,
    ) -> Any:
        """A component that sets several paths at once; ``to_config`` returns {path: value} (None = unset)."""
        self.fields[name] = Field(name, component, to_config, to_ui, None, paths, error_target)
        return component

    def _initial(self, path: str) -> Any:
        try:
            return cfg.get_path(self.initial, path)
        except KeyError:
            return None

    @staticmethod
    def _default(path: str) -> Any:
        if path.startswith("training."):
            return None
        return schema_defaults().get(path)

    @property
    def components(self) -> list[Any]:
        return [f.component for f in self.fields.values()]

    def component(self, path: str) -> Any:
        return self.fields[path].component

    # -- reading the form

    def raw(self, values: dict[Any, Any], *, keep_unused: bool = False) -> dict[str, Any]:
        """The nested config mapping the form describes (only values that differ from "unset").

        Fields the chosen task has no use for (config.UNUSED_BY_TASK) stay in the form, not in the config;
        ``keep_unused`` keeps them (the copy of the form a reload restores).
        """
        out: dict[str, Any] = {}
        for f in self.fields.values():
            if f.component not in values:
                continue
            converted = f.to_config(values[f.component])
            items = converted if f.paths != (f.path,) else {f.path: converted}
            for path, value in items.items():
                default = f.default if f.paths == (f.path,) else None
                if value is not None and value != default:
                    cfg.set_path(out, path, value)
        for unused in () if keep_unused else cfg.UNUSED_BY_TASK.get(out.get("task", "sft"), ()):
            _drop(out, unused)
        return out

    def validate(self, values: dict[Any, Any]) -> tuple[cfg.Config | None, list[Problem]]:
        """The config the form describes, or the problems that stop it (a path the page may not open too):
        every handler gets its config here, so nothing the page runs opens a path this refuses."""
        try:
            config = cfg.from_dict(self.raw(values))
        except ConfigError as exc:  # the same problems the CLI prints, each with its path
            return None, exc.items
        refused = [Problem(path, message) for path, message in self.access.problems(config)]
        return (None, refused) if refused else (config, [])

    # -- writing the form

    def form_values(self, config: dict[str, Any]) -> dict[Any, Any]:
        """UI values for every bound component from a nested config mapping (e.g. a preset's values)."""
        out = {}
        for f in self.fields.values():
            if f.paths == (f.path,):
                try:
                    value = cfg.get_path(config, f.path)
                except KeyError:
                    continue
                out[f.component] = f.to_ui(value)
            else:
                out[f.component] = f.to_ui(config)
        return out

    def load(self, raw: dict[str, Any]) -> dict[Any, Any]:
        """UI values for the whole form from a config mapping as :meth:`raw` writes it (unset = as built)."""
        out = {}
        for f in self.fields.values():
            if f.paths != (f.path,):
                out[f.component] = f.to_ui(raw)
                continue
            try:
                value = cfg.get_path(raw, f.path)
            except KeyError:
                value = f.fallback
            out[f.component] = f.to_ui(value)
        return out

    def owner(self, path: str) -> Field | None:
        """The field that shows problems about ``path`` ('tokens.add[0]' -> the tokens table)."""
        bare = re.sub(r"\[\d+\]", "", path)
        candidates = [f for f in self.fields.values() if bare in f.paths or path in f.paths]
        if candidates:
            return candidates[0]
        parts = bare.split(".")
        while parts:  # a problem about a section: its first field
            prefix = ".".join(parts)
            for f in self.fields.values():
                if any(p == prefix or p.startswith(prefix + ".") for p in f.paths):
                    return f
            parts.pop()
        return None

    def problem_updates(self, problems: list[Problem], lang: str, shown: list[str]) -> tuple[dict, list[str]]:
        """Updates that show each problem in the help line of its field and restore the fields fixed since.

        ``shown`` names the fields showing a problem now. Returns (updates keyed by component, the new names).
        """
        import gradio as gr

        by_target: dict[str, list[Problem]] = {}
        for p in problems:
            f = self.owner(p.path)
            if f is not None:
                by_target.setdefault(self._target_owner(f).path, []).append(p)
        updates = {}
        for name in set(shown) | set(by_target):
            f = self.fields.get(name)
            if f is None:
                continue
            if name in by_target:
                todo = all(p.todo for p in by_target[name])
                mark, style = ("→ ", "tb-todo") if todo else ("⚠ ", "tb-invalid")
                message = info_text(mark + "; ".join(problem_text(p, lang) for p in by_target[name]))
                updates[f.error_target] = gr.update(info=message, elem_classes=["tb-field", style])
            else:
                help_text = i18n.field_help(lang, f.path) if f.help else ""  # None would mean "unchanged"
                updates[f.error_target] = gr.update(info=help_text, elem_classes=["tb-field"])
        return updates, sorted(by_target)

    def _target_owner(self, f: Field) -> Field:
        """The field whose own component shows ``f``'s problems (itself, unless it has no help line)."""
        if f.error_target is f.component:
            return f
        return next((g for g in self.fields.values() if g.component is f.error_target), f)

    def label(self, path: str, lang: str) -> str:
        f = self.owner(path)
        return i18n.field_label(lang, f.path) if f else (path or i18n.t(lang, "errors.config"))


LIVE_PATHS = frozenset(p for p in explain.LIVE_INPUTS.values())


def explanation_html(path: str, lang: str, numbers: dict[str, Any] | None = None) -> str:
    """A field's explanation as a folded <details> block: each part under its heading, then, given the
    form's ``numbers``, the arithmetic with them (explain.live)."""
    parts = explain.entry(path, lang)
    body = "".join(
        f"<p><b>{html.escape(explain.heading(part, lang))}</b> {html.escape(text)}</p>"
        for part, text in parts.items()
    )
    now = explain.live(path, numbers, lang) if numbers else None
    if now:
        body += f"<p class='tb-live'>{html.escape(now)}</p>"
    summary = html.escape(i18n.t(lang, "app.explain"))
    return f"<details><summary>{summary}</summary>{body}</details>"


def _from_schema(path: str, cls: Any, convert: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A choice field's choices are its schema ``Literal`` (plus 'auto' where unset means automatic), a
    slider's bounds the field's ``ge``/``le``: given here only where the schema has none."""
    out = dict(kwargs)
    options = cfg.choices(path)
    if options is not None and "choices" not in out:
        out["choices"] = [AUTO, *options] if convert == "auto" and AUTO not in options else list(options)
    if cls.__name__ == "Slider":
        low, high = cfg.bounds(path)
        if low is not None and "minimum" not in out:
            out["minimum"] = low
        if high is not None and "maximum" not in out:
            out["maximum"] = high
    return out


def _drop(mapping: dict[str, Any], path: str) -> None:
    """Remove the dotted ``path`` from a nested mapping where it is set, and the sections it leaves empty."""
    head, _, rest = path.partition(".")
    if not rest:
        mapping.pop(head, None)
    elif isinstance(mapping.get(head), dict):
        _drop(mapping[head], rest)
        if not mapping[head]:
            del mapping[head]


def info_text(message: str) -> str:
    """A message (which may quote a column name or a path) safe for a component's help line: gradio 6.31
    escapes HTML there but turns [text](url) into a live link and **x** / __x__ into bold; an invisible
    word joiner (U+2060) breaks both and changes nothing visible."""
    return message.replace("](", "]\u2060(").replace("**", "*\u2060*").replace("__", "_\u2060_")
