"""What the page's sections share: the data directory, the binder, the language, the analysis, and each
section's components (``ctx.dataset.preview``, ``ctx.run.watch``: one dataclass per section, in its module).

    (imported by finetune/ui/page.py and the *_tab.py modules)

Data flow: a field the user commits (blur, Enter, pick, slider release) re-runs :meth:`Ctx.run_analysis`,
which validates the form, runs the engine's checks (finetune/ui/previews.py, in the analysis process) and
stores plain results in the ``analysis`` state; each section re-renders its part when that state or the
language changes. Problems go next to their fields and into the banner at the top, in the chosen language.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from finetune import config as cfg
from finetune import runs as run_dirs  # ctx.runs: the Runs section's handles
from finetune.errors import Problem, TuneboardError
from finetune.ui import charts, i18n, previews
from finetune.ui.binder import Binder, problem_text

if TYPE_CHECKING:  # each section module defines its own handles; they import this module
    from finetune.ui.dataset_tab import DatasetParts
    from finetune.ui.hparams_tab import HparamsParts
    from finetune.ui.page import PageParts
    from finetune.ui.run_tab import RunParts
    from finetune.ui.runs_tab import RunsParts
    from finetune.ui.template_tab import TemplateParts
    from finetune.ui.tokens_tab import TokensParts
    from finetune.ui.try_tab import TryParts

log = logging.getLogger("tuneboard.ui")


@dataclass(slots=True)  # slots: a misspelt attribute is an AttributeError, never a new one
class Ctx:
    home: Path
    texts: i18n.Texts
    binder: Binder
    lang: Any = None  # gr.State: "en" / "ja"
    analysis: Any = None  # gr.State: the last analysis (plain dict)
    shown: Any = None  # gr.State: names of the fields showing a problem now
    banner: Any = None  # gr.HTML: every current problem, above the tabs
    tabs: gr.Tabs | None = None  # the seven sections (the Runs section's Watch switches to Run)
    tab: dict[str, gr.Tab] = field(default_factory=dict)  # section key ("runs") -> its tab
    # Each section's components that its handlers and other sections use, set by its build() (page.py builds
    # them in order): one typed handle per section, read before it is set is an AttributeError.
    page: PageParts = field(init=False, repr=False)
    dataset: DatasetParts = field(init=False, repr=False)
    template: TemplateParts = field(init=False, repr=False)
    tokens: TokensParts = field(init=False, repr=False)
    hparams: HparamsParts = field(init=False, repr=False)
    run: RunParts = field(init=False, repr=False)
    runs: RunsParts = field(init=False, repr=False)
    try_: TryParts = field(init=False, repr=False)  # "try" is a keyword
    # (fn, inputs, outputs) re-rendered on every analysis or language change, in one event: each event makes
    # the browser send its inputs (the whole form) and track its outputs; twelve of them made a commit slow.
    followers: list[tuple[Any, list[Any], list[Any]]] = field(default_factory=list)

    @property
    def runs_root(self) -> Path:
        return run_dirs.runs_root(self.home)

    def form(self, *extra: Any) -> set[Any]:
        """Dict-keyed inputs: the whole form plus the language and whatever else a handler reads."""
        return {*self.binder.components, self.lang, self.shown, *extra}

    def error_targets(self) -> list[Any]:
        return list(dict.fromkeys(f.error_target for f in self.binder.fields.values()))

    def analysis_outputs(self) -> list[Any]:
        return [self.analysis, self.shown, self.banner, *self.error_targets()]

    def follow_analysis(self, fn: Any, inputs: Any, outputs: Any) -> None:
        """Show ``fn(data)`` in ``outputs`` (data keyed by ``inputs``) when analysis or language change."""
        outs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
        self.followers.append((fn, list(inputs), outs))

    def wire_followers(self) -> None:
        """One event for every :meth:`follow_analysis` (called once, after every section is wired)."""
        inputs = set().union(*(ins for _, ins, _ in self.followers))
        outputs = list(dict.fromkeys(c for _, _, outs in self.followers for c in outs))

        def follow(data: dict[Any, Any]) -> dict[Any, Any]:
            out: dict[Any, Any] = {}
            for fn, _, outs in self.followers:
                out.update(keyed(fn(data), outs))
            return out

        gr.on(
            [self.analysis.change, self.lang.change], follow, inputs, outputs,
            show_progress="hidden", trigger_mode="always_last",
        )  # fmt: skip

    def config_or_problems(self, data: dict[Any, Any]) -> tuple[cfg.Config | None, list[Problem]]:
        return self.binder.validate(data)

    def show_problems(self, data: dict[Any, Any], problems: list[Problem]) -> dict[Any, Any]:
        """Updates that put ``problems`` next to their fields and into the banner."""
        lang = data[self.lang]
        updates, shown = self.binder.problem_updates(problems, lang, data.get(self.shown) or [])
        return {**updates, self.shown: shown, self.banner: banner(self.binder, problems, lang)}

    def run_analysis(self, data: dict[Any, Any]) -> dict[Any, Any]:
        config, problems = self.config_or_problems(data)
        result: dict[str, Any] = {"ok": False}
        if config is not None:
            try:
                result = previews.analyze(config) | {"ok": True}
                if result["counting"]:  # the first records' lengths now; every record's in the background
                    previews.count_every_record(config)
                lengths = result.get("lengths") or {}
                result["summary"] = previews.summary(
                    config, result["records"], lengths.get("mean_cut", 0.0), lengths.get("max") or None
                )
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message, never a traceback
                problems = engine_problems(exc)
        result["problems"] = [asdict(p) for p in problems]
        return {self.analysis: result, **self.show_problems(data, problems)}


def keyed(result: Any, outputs: list[Any]) -> dict[Any, Any]:
    """A handler's return value (a dict keyed by component, one value, or one value per output) as a dict."""
    if isinstance(result, dict) and not any(isinstance(k, str) for k in result):  # gr.update() has str keys
        return result
    if len(outputs) == 1:
        return {outputs[0]: result}
    return dict(zip(outputs, result, strict=True))


def merge(out: dict[Any, Any], updates: dict[Any, Any]) -> dict[Any, Any]:
    """Add ``updates`` to ``out``; where both set one component (a value and an error line), combine them."""
    for component, update in updates.items():
        if component not in out:
            out[component] = update
            continue
        first = out[component]
        first = (
            dict(first)
            if isinstance(first, dict) and first.get("__type__") == "update"
            else gr.update(value=first)
        )
        second = (
            dict(update)
            if isinstance(update, dict) and update.get("__type__") == "update"
            else {"value": update}
        )
        out[component] = {**first, **second}
    return out


def engine_problems(exc: BaseException) -> list[Problem]:
    """An engine exception as problems with paths (a TuneboardError's own; anything else, one without)."""
    if isinstance(exc, TuneboardError):  # a JobError has no field (a full disk): the banner says why
        return list(exc.items)
    log.exception("unexpected error while checking the config")
    first = str(exc).strip().splitlines()
    return [Problem("", f"{type(exc).__name__}: {first[0] if first else ''}")]


def banner(binder: Binder, problems: list[Problem], lang: str) -> str:
    """Every current problem above the tabs; choices still to make (map a column) in a box of their own."""
    out = ""
    for todo, key, kind in ((False, "errors.banner", "error"), (True, "errors.todo", "todo")):
        chosen = [p for p in problems if p.todo == todo]
        if chosen:
            items = [f"{binder.label(p.path, lang)}: {problem_text(p, lang)}" for p in chosen]
            head = charts.esc(i18n.t(lang, key, n=len(chosen)))
            out += f"<div class='tb-banner {kind}'><b>{head}</b>{charts.notes(items, kind)}</div>"
    return out


def problems_of(analysis: dict[str, Any] | None) -> list[Problem]:
    return [Problem(**p) for p in (analysis or {}).get("problems", [])]


def commits(*components: Any) -> list[Any]:
    """The events that mean "the user settled on a value" for each component type (never programmatic)."""
    out = []
    for c in components:
        if isinstance(c, (gr.Textbox, gr.Number)):
            out += [c.blur, c.submit]
        elif isinstance(c, gr.Slider):
            out += [c.release, c.input]  # input: typing in the slider's number box (release needs a blur)
        elif isinstance(c, gr.Code):
            out += [c.blur]
        elif isinstance(c, gr.Dropdown) and c.allow_custom_value:
            out += [c.input, c.blur]  # a typed value (a Hub id) arrives with the blur, not with input
        elif isinstance(c, (gr.Dropdown, gr.Radio, gr.Checkbox)):
            out += [c.input]
    return out


def config_from(data: dict[Any, Any], binder: Binder) -> cfg.Config | None:
    config, _ = binder.validate(data)
    return config
