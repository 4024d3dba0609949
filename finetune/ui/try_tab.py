"""Section 7, Try it: talk to a run's model (final/ or any complete checkpoint) with its own template,
system prompt and tokens, the base model's answer beside it; does it stop; a classifier's labels.

    (built by finetune/ui/page.py; engine: finetune/worker.py runs the model, finetune/stops.py the figure)

The model never loads in this process: the one inference worker (finetune/worker.py) holds it, on a GPU no
training run holds or waits for, else on the CPU with a note. Answers stream piece by piece; the tuned
model answers first, then the base model, each in its own box.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from finetune import config as cfg
from finetune import inference, runs, stops
from finetune.errors import JobError, TuneboardError
from finetune.ui import after_tab, charts, i18n
from finetune.ui.after_tab import AfterParts
from finetune.ui.context import Ctx
from finetune.worker import Worker

SETTINGS = {  # generation field -> (component, its extra arguments): labels, help and bounds from the schema
    "generation.max_new_tokens": (gr.Number, {"precision": 0}),
    "generation.temperature": (gr.Slider, {"step": 0.05}),
    "generation.top_p": (gr.Slider, {"step": 0.05}),
    "generation.repetition_penalty": (gr.Slider, {"step": 0.05}),
}


@dataclass(slots=True)
class TryParts:
    """The section's components, and the handle on the inference worker."""

    worker: Worker | None = None
    run: gr.Dropdown | None = None  # runs that have weights to answer with
    weights: gr.Dropdown | None = None  # final / checkpoint-N
    compare: gr.Checkbox | None = None  # the base model answers too
    other: gr.Dropdown | None = None  # ... or another run's final model does, to compare two runs
    settings: dict[str, Any] = field(default_factory=dict)  # SETTINGS' paths -> component
    status: gr.Markdown | None = None  # what answers, where
    stops: gr.HTML | None = None  # the stop check of the picked weights
    check: gr.Button | None = None  # run the stop check now
    chat_group: gr.Row | None = None
    tuned: gr.Chatbot | None = None
    base: gr.Chatbot | None = None
    labels: gr.Label | None = None  # a classification run's answer
    message: gr.Textbox | None = None
    send: gr.Button | None = None
    clear: gr.Button | None = None
    unload: gr.Button | None = None
    after: AfterParts | None = None  # evaluate and export (finetune/ui/after_tab.py)


def build(ctx: Ctx) -> None:
    p = ctx.try_ = TryParts(worker=Worker(ctx.runs_root, ctx.home / ".cache" / "worker.log"))
    tx = ctx.texts
    tx.add(gr.Markdown(i18n.t("en", "try.intro"), elem_classes=["tb-intro"]), value="try.intro")
    _build_picker(ctx, p)
    with gr.Row(equal_height=False):
        for path, (cls, extra) in SETTINGS.items():
            p.settings[path] = _setting(ctx, path, cls, extra)
    p.status = gr.Markdown(elem_id="tb-try-status")
    with gr.Row(equal_height=True):
        p.stops = gr.HTML(elem_id="tb-stops")
        p.check = tx.add(
            gr.Button(i18n.t("en", "try.check"), size="sm", scale=0, min_width=200, elem_id="tb-check-stops"),
            value="try.check",
        )
    _build_conversation(ctx, p)
    p.after = after_tab.build(ctx)


def _build_picker(ctx: Ctx, p: TryParts) -> None:
    tx = ctx.texts
    with gr.Row(equal_height=True):
        p.run = tx.add(gr.Dropdown([], label=i18n.t("en", "try.run"), scale=3, elem_id="tb-try-run"),
                       label="try.run")  # fmt: skip
        p.weights = tx.add(
            gr.Dropdown([], label=i18n.t("en", "try.weights"), scale=1, elem_id="tb-try-weights"),
            label="try.weights",
        )
        p.compare = tx.add(
            gr.Checkbox(True, label=i18n.t("en", "try.compare"), scale=1, elem_id="tb-try-compare"),
            label="try.compare",
        )
        other = gr.Dropdown([], value=None, label=i18n.t("en", "try.other"),
                            info=i18n.t("en", "try.other_help"), scale=2, elem_id="tb-try-other")  # fmt: skip
        p.other = tx.add(other, label="try.other", info="try.other_help")


def _setting(ctx: Ctx, path: str, cls: Any, extra: dict[str, Any]) -> Any:
    """A generation setting as the schema defines it (its label, help, bounds and default)."""
    low, high = cfg.bounds(path)
    bounds = {"minimum": low if low else 0.01, "maximum": high} if cls is gr.Slider else {}
    component = cls(
        value=cfg.field_info(path).default,
        label=i18n.field_label("en", path),
        info=i18n.field_help("en", path),
        elem_id=f"tb-{path.replace('.', '-').replace('_', '-')}",
        **bounds,
        **extra,
    )
    return ctx.texts.add(
        component,
        label=lambda lang: i18n.field_label(lang, path),
        info=lambda lang: i18n.field_help(lang, path),
    )


def _build_conversation(ctx: Ctx, p: TryParts) -> None:
    tx = ctx.texts
    with gr.Row(equal_height=True) as p.chat_group:
        p.tuned = tx.add(gr.Chatbot(label=i18n.t("en", "try.tuned"), height=360, render_markdown=False,
                                    elem_id="tb-chat-tuned"), label="try.tuned")  # fmt: skip
        p.base = tx.add(gr.Chatbot(label=i18n.t("en", "try.base"), height=360, render_markdown=False,
                                   elem_id="tb-chat-base"), label="try.base")  # fmt: skip
    p.labels = tx.add(gr.Label(label=i18n.t("en", "try.labels"), visible=False, elem_id="tb-try-labels"),
                      label="try.labels")  # fmt: skip
    with gr.Row(equal_height=True):
        p.message = tx.add(
            gr.Textbox(label=i18n.t("en", "try.message"), scale=4, elem_id="tb-try-message"),
            label="try.message",
        )
        send = gr.Button(i18n.t("en", "try.send"), variant="primary", scale=1, elem_id="tb-try-send")
        p.send = tx.add(send, value="try.send")
        p.clear = tx.add(gr.Button(i18n.t("en", "try.clear"), size="sm", scale=0, elem_id="tb-try-clear"),
                         value="try.clear")  # fmt: skip
        p.unload = tx.add(gr.Button(i18n.t("en", "try.unload"), size="sm", scale=0, elem_id="tb-try-unload"),
                          value="try.unload")  # fmt: skip


# ---------------------------------------------------------------- what there is to try


def runs_with_weights(root: Path) -> list[str]:
    """Runs that can answer: a final/ model or a complete checkpoint."""
    return [r.id for r in runs.list_runs(root) if inference.available(Path(r.path))]


def stops_html(run_dir: Path, weights: str, lang: str) -> str:
    """The stop check of these weights: the figure, and a warning with the usual causes under 90%."""
    result = stops.read(run_dir, weights)
    if result is None:
        return f"<div class='tb-notes'>{charts.esc(i18n.t(lang, 'try.no_check'))}</div>"
    if not result["answered"]:
        return f"<div class='tb-notes warn'>{charts.esc(i18n.t(lang, 'try.check_none'))}</div>"
    line = i18n.t(lang, "try.check_figure", stopped=result["stopped"], n=result["answered"],
                  pct=round(100 * result["share"]), eot=result["end_of_turn"], limit=result["max_new_tokens"],
                  mean=round(result["mean_answer_tokens"]), data=round(result["data_mean_answer_tokens"]),
                  source=i18n.t(lang, f"try.prompts_{result['prompts_from']}"))  # fmt: skip
    if result["share"] >= stops.WARN_BELOW:
        return f"<div class='tb-notes' id='tb-stops-ok'>✓ {charts.esc(line)}</div>"
    causes = "".join(f"<li>{charts.esc(i18n.problem(lang, c))}</li>" for c in result["causes"])
    head = charts.esc(i18n.t(lang, "try.check_warn"))
    body = f"<b>⚠ {head}</b> {charts.esc(line)}<ul>{causes}</ul>"
    return f"<div class='tb-notes warn' id='tb-stops-warn'>{body}</div>"


def others(root: Path, chosen: str | None, other: str | None) -> Any:
    """The runs that can answer beside ``chosen`` (their final model): every other run with a final/."""
    ids = [
        r
        for r in runs_with_weights(root)
        if r != chosen and inference.FINAL_DIR in inference.available(root / r)
    ]
    return gr.update(choices=[("—", "")] + [(r, r) for r in ids], value=other if other in ids else "")


def chosen_run(root: Path, run_id: str | None, weights: str | None = None) -> Path:
    """The run (and weights) picked, checked against what is listed: a request naming anything else (a path,
    a run without weights) is refused, whatever the browser sent."""
    run_dir = root / str(run_id)
    if run_id not in runs_with_weights(root) or (
        weights is not None and weights not in inference.available(run_dir)
    ):
        raise JobError(f"no run {run_id!r} with weights {weights or 'final'!r} to answer with: pick one")
    return run_dir


def checkpoint_of(weights: str | None) -> int | None:
    return None if not weights or weights == inference.FINAL_DIR else int(weights.rsplit("-", 1)[1])


# ---------------------------------------------------------------- wiring


def wire(ctx: Ctx) -> None:
    _wire_picking(ctx)
    _wire_talking(ctx)
    after_tab.wire(ctx)


def _wire_picking(ctx: Ctx) -> None:
    p = ctx.try_

    def listed(chosen: str | None, other: str | None) -> tuple[Any, Any]:
        ids = runs_with_weights(ctx.runs_root)
        chosen = chosen if chosen in ids else (ids[0] if ids else None)
        return gr.update(choices=ids, value=chosen), others(ctx.runs_root, chosen, other)

    gr.on(
        [ctx.tab["try"].select, p.run.focus],
        listed,
        [p.run, p.other],
        [p.run, p.other],
        show_progress="hidden",
    )

    def beside(other: str | None, lang: str) -> Any:
        return gr.update(label=other or i18n.t(lang, "try.base"))

    p.other.change(beside, [p.other, ctx.lang], p.base, show_progress="hidden")

    def picked(run_id: str | None, lang: str) -> dict[Any, Any]:
        try:
            run_dir = chosen_run(ctx.runs_root, run_id)
        except TuneboardError:
            return {p.weights: gr.update(choices=[], value=None), p.stops: "", p.status: "",
                    p.after.result: "", p.after.hold_out: gr.update(visible=False)}  # fmt: skip
        weights = inference.available(run_dir)
        config = cfg.load(run_dir / "config.yaml")
        classify = config.task == "classification"
        out = {p.weights: gr.update(choices=weights, value=weights[0] if weights else None),
               p.stops: "" if classify else stops_html(run_dir, weights[0], lang) if weights else "",
               p.check: gr.update(visible=not classify), p.compare: gr.update(visible=not classify),
               p.chat_group: gr.update(visible=not classify),
               p.labels: gr.update(visible=classify, value=None),
               p.tuned: [], p.base: [], p.status: ""}  # fmt: skip
        out[p.other] = others(ctx.runs_root, run_id, None) | {"visible": not classify}
        out[p.after.result], out[p.after.hold_out] = after_tab.shown(
            run_dir, weights[0] if weights else None, lang
        )
        for path, component in p.settings.items():
            out[component] = gr.update(value=cfg.get_path(config.model_dump(), path), visible=not classify)
        return out

    outs = [p.weights, p.stops, p.check, p.compare, p.chat_group, p.labels, p.tuned, p.base, p.status,
            p.after.result, p.after.hold_out, p.other, *p.settings.values()]  # fmt: skip
    p.run.change(picked, [p.run, ctx.lang], outs, show_progress="hidden")

    def weights_picked(run_id: str | None, weights: str | None, lang: str) -> tuple:
        try:
            run_dir = chosen_run(ctx.runs_root, run_id, weights)
        except TuneboardError:
            return "", "", gr.update(visible=False)
        return stops_html(run_dir, weights, lang), *after_tab.shown(run_dir, weights, lang)

    after = [p.after.result, p.after.hold_out]
    p.weights.input(weights_picked, [p.run, p.weights, ctx.lang], [p.stops, *after], show_progress="hidden")


def _wire_talking(ctx: Ctx) -> None:
    p = ctx.try_
    inputs = [p.run, p.weights, p.compare, p.other, p.message, p.tuned, p.base, ctx.lang,
              *p.settings.values()]  # fmt: skip
    outputs = [p.tuned, p.base, p.labels, p.status, p.message]

    def send(run_id: str | None, weights: str | None, compare: bool, other: str | None, message: str,
             tuned: list | None, base: list | None, lang: str, *values: Any) -> Iterator[tuple]:  # fmt: skip
        ask = Ask(run_id, weights, bool(compare), message or "", lang, values, other or None)
        yield from _converse(ctx, ask, tuned or [], base or [])

    gr.on([p.send.click, p.message.submit], send, inputs, outputs, concurrency_limit=1)
    p.clear.click(lambda: ([], [], None), None, [p.tuned, p.base, p.labels], show_progress="hidden")

    def unload(lang: str) -> str:
        p.worker.close()
        return i18n.t(lang, "try.unloaded")

    p.unload.click(unload, ctx.lang, p.status)

    def check(run_id: str | None, weights: str | None, lang: str) -> Any:
        if not run_id or not weights:
            return gr.skip()
        try:
            run_dir = chosen_run(ctx.runs_root, run_id, weights)
            p.worker.load("tuned", run_dir, checkpoint_of(weights))
            p.worker.check_stops()
        except TuneboardError as exc:
            return f"<div class='tb-notes error'>{charts.esc(str(exc))}</div>"
        return stops_html(run_dir, weights, lang)

    p.check.click(check, [p.run, p.weights, ctx.lang], p.stops)


@dataclass(frozen=True)
class Ask:
    """One press of Send: what to ask, of which weights, in which language, with which settings."""

    run_id: str | None
    weights: str | None
    compare: bool
    message: str
    lang: str
    values: tuple  # the SETTINGS components' values, in order
    other: str | None = None  # another run whose final model answers in the second box, instead of the base


def _converse(ctx: Ctx, ask: Ask, tuned: list, base: list) -> Iterator[tuple]:
    """Load what answers (if it is not loaded yet), then stream the tuned answer, then the base one."""
    p = ctx.try_
    if not ask.run_id or not ask.message.strip():
        yield tuned, base, gr.skip(), gr.skip(), gr.skip()
        return
    try:
        run_dir = chosen_run(ctx.runs_root, ask.run_id, ask.weights)
        settings = cfg.generation_settings(
            cfg.GenerationConfig(), dict(zip(SETTINGS, ask.values, strict=True))
        )
        classify = cfg.load(run_dir / "config.yaml").task == "classification"
        other = (
            chosen_run(ctx.runs_root, ask.other, inference.FINAL_DIR) if ask.other and not classify else None
        )
        second = bool(other) or (ask.compare and not classify)
        status = _load(ctx, run_dir, checkpoint_of(ask.weights), second, ask.lang, other)
        if classify:
            yield tuned, base, dict(p.worker.classify(ask.message)), status, ""
            return
        for slot, history in [("tuned", tuned), *([("base", base)] if second else [])]:
            question = [*_plain(history), {"role": "user", "content": ask.message}]
            history.extend([{"role": "user", "content": ask.message}, {"role": "assistant", "content": ""}])
            for item in p.worker.answer(slot, question, settings):
                if "piece" in item:
                    history[-1]["content"] += item["piece"]
                else:
                    status += " " + _ending(
                        item["reply"], other.name if other and slot == "base" else slot, ask.lang
                    )
                yield tuned, base, gr.skip(), status, ""
    except TuneboardError as exc:
        yield tuned, base, gr.skip(), f"⚠ {charts.md_text(str(exc))}", gr.skip()


def _plain(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": str(m["content"])} for m in history]


def _load(ctx: Ctx, run_dir: Path, checkpoint: int | None, compare: bool, lang: str,
          other: Path | None = None) -> str:  # fmt: skip
    """Have the worker hold the run's model (and its base, or another run's model in the second slot);
    the status line says where it answers."""
    p = ctx.try_
    p.worker.load("tuned", run_dir, checkpoint)
    if other is not None:
        p.worker.load("base", other, base=False)
    elif compare:
        p.worker.load("base", run_dir)
    device = p.worker.device or "cpu"
    note = i18n.t(lang, "try.gpus_busy") if p.worker.device_note == "gpus_busy" else ""
    return i18n.t_md(lang, "try.status", run=run_dir.name, device=device) + (f" {note}" if note else "")


def _ending(reply: dict[str, Any], slot: str, lang: str) -> str:
    key = "try.ended_stop" if reply["stopped"] else "try.ended_limit"
    first = reply["first_token_seconds"]
    who = i18n.t(lang, f"try.{slot}") if slot in ("tuned", "base") else slot  # or another run's id
    return i18n.t(lang, key, who=who, tokens=reply["tokens"],
                  first=f"{first:.2f}" if first is not None else "-")  # fmt: skip
