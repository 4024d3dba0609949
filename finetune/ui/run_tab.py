"""Section 5, Run: Start and Stop, progress, the live log and metric plots, TensorBoard in the page, and the
effective config with a YAML download and the equivalent command line.

    (built by finetune/ui/page.py; engine: finetune/jobs.py starts/stops, finetune/runs.py reads)

Streaming: the progress line and the log follow the watched run once a second through the page's script
and a JSON route (finetune/ui/live.py: no Gradio event, which costs the browser a core on a small machine);
it clicks the hidden ``refresh`` button when the run's state or the queue changes. A slow gr.Timer
(PLOT_EVERY) redraws the plots; each tick reads only the bytes appended to train.log and metrics.jsonl
since the offsets kept in the page's state (finetune/runs.py: attach, poll). Nothing runs per job in this
process
(finetune/scheduler.py's one supervisor thread starts queued runs and notices dead ones), so a reload, a
second browser or a restarted app simply attach again from the run directory. Start queues when every
slot is busy; the queue is shared by every browser.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from finetune import hosting, jobs, runs, scheduler
from finetune import status as st
from finetune.config import dump_yaml
from finetune.ui import charts, i18n, previews
from finetune.ui.context import Ctx, config_from, engine_problems, merge
from finetune.ui.downloads import download_file

# Seconds between Gradio's redraws of the run on screen (the plots while it trains; live.js keeps the
# progress line and log current in between, and asks for a redraw at once when the state changes or the
# first points arrive). Each redraw costs the browser ~0.7 s of CPU, which a 2-core machine takes from the
# trainer; 30 s saved little on runs of a minute (bench/RESULTS.md, 2026-12-08) and left the demo's plot
# nearly still, so 10 s.
PLOT_EVERY = 10.0
PLOTS = {
    "loss_plot": {"loss": "loss", "eval_loss": "eval loss"},
    "lr_plot": {"learning_rate": "learning rate"},
    "grad_plot": {"grad_norm": "grad norm"},
    "speed_plot": {"tokens_per_second": "tokens/s"},
}
COLORS = {
    "loss": "#f97316",
    "eval loss": "#2563eb",
    "learning rate": "#16a34a",
    "grad norm": "#9333ea",
    "tokens/s": "#0891b2",
}
QUEUE_ACTIONS = ("up", "down", "cancel")


@dataclass(slots=True)
class RunParts:
    """The section's components that its handlers, the page and the Runs section use."""

    start: gr.Button | None = None
    stop: gr.Button | None = None
    resume: gr.Button | None = None
    watch: gr.Dropdown | None = None  # the run on screen: only user actions set it
    progress: gr.HTML | None = None
    queue_group: gr.Group | None = None  # the shared queue, shown while runs wait
    queue_table: gr.HTML | None = None
    queue_pick: gr.Dropdown | None = None
    queue_buttons: dict[str, gr.Button] = field(default_factory=dict)  # QUEUE_ACTIONS -> its button
    plots: dict[str, gr.LinePlot] = field(default_factory=dict)  # PLOTS' names -> the plot
    log: gr.HTML | None = None
    tb_open: gr.Button | None = None
    tb_frame: gr.HTML | None = None
    config_note: gr.Markdown | None = None
    cli: gr.Textbox | None = None
    download: gr.DownloadButton | None = None
    effective: gr.Code | None = None
    follow: gr.State | None = None  # what runs.attach / runs.poll returned last
    timer: gr.Timer | None = None
    refresh: gr.Button | None = None  # hidden: live.js clicks it when the run's state or the queue changed

    def config_panel(self) -> list[Any]:
        """The config panel, in :func:`config_view`'s order."""
        return [self.config_note, self.cli, self.download, self.effective]


def build(ctx: Ctx) -> None:
    p = ctx.run = RunParts()
    _build_launch(ctx)
    _build_controls(ctx, p)
    p.progress = gr.HTML(elem_id="tb-progress")
    _build_queue(ctx, p)
    _build_plots(ctx, p)
    p.log = log_panel(ctx, "run.log", "tb-log")
    _build_tensorboard(ctx, p)
    _build_config_panel(ctx, p)
    p.follow = gr.State({})
    p.timer = gr.Timer(PLOT_EVERY, active=False)
    p.refresh = gr.Button(visible="hidden", elem_id="tb-live-refresh")


def _build_launch(ctx: Ctx) -> None:
    """How many processes (GPUs) the run takes and how they share the model, beside what this machine has;
    on ZeroGPU hardware, why Start is off."""
    b, tx = ctx.binder, ctx.texts
    with gr.Row(equal_height=True, elem_id="tb-launch"):
        b.field("launch.num_processes", gr.Number, convert="int", precision=0, scale=1, min_width=200)
        b.field("launch.strategy", gr.Dropdown, scale=1, min_width=200)
        tx.add(gr.Markdown(machine_note("en"), elem_id="tb-machine"), value=machine_note)
    if hosting.zero_gpu():
        tx.add(gr.Markdown(zero_gpu_note("en"), elem_id="tb-zero-gpu", elem_classes=["tb-warn"]),
               value=zero_gpu_note)  # fmt: skip


def machine_note(lang: str) -> str:
    """The device slots the queue hands out: the visible GPUs, else the CPU."""
    found = [slot for slot in scheduler.slots() if slot != "cpu"]
    if not found:
        return i18n.t(lang, "run.machine_cpu")
    return i18n.t(lang, "run.machine_gpus", n=len(found), ids=", ".join(found))


def zero_gpu_note(lang: str) -> str:
    return i18n.t(lang, "run.zero_gpu", hardware=hosting.GPU_HARDWARE)


def _build_controls(ctx: Ctx, p: RunParts) -> None:
    """Start, Stop and Resume, and the Watch dropdown that picks the run on screen."""
    tx = ctx.texts
    with gr.Row(equal_height=True):
        p.start = tx.add(
            gr.Button(
                i18n.t("en", "run.start"),
                variant="primary",
                scale=2,
                interactive=not hosting.zero_gpu(),  # no background run there (zero_gpu_note)
                elem_id="tb-start",
            ),
            value="run.start",
        )
        p.stop = tx.add(
            gr.Button(
                i18n.t("en", "run.stop"), variant="stop", scale=2, interactive=False, elem_id="tb-stop"
            ),
            value="run.stop",
        )
        p.resume = tx.add(
            gr.Button(i18n.t("en", "run.resume"), scale=1, interactive=False, elem_id="tb-resume"),
            value="run.resume",
        )
        p.watch = tx.add(
            gr.Dropdown([], label=i18n.t("en", "run.watch"), scale=3, elem_id="tb-watch"), label="run.watch"
        )


def log_panel(ctx: Ctx, label: str, elem_id: str) -> gr.HTML:
    """A run's log shown as it is (charts.log_box), its title in the page's language: Run's and Runs'."""
    box = gr.HTML(
        charts.log_box([]), label=i18n.t("en", label), show_label=True, container=True, elem_id=elem_id
    )
    return ctx.texts.add(box, label=label)


def _build_queue(ctx: Ctx, p: RunParts) -> None:
    """The shared queue: the waiting runs in order, and a pick with buttons to move or cancel one."""
    tx = ctx.texts
    with gr.Group(visible=False, elem_id="tb-queue-group") as p.queue_group:
        p.queue_table = gr.HTML(elem_id="tb-queue")
        with gr.Row(equal_height=True):
            p.queue_pick = tx.add(
                gr.Dropdown([], label=i18n.t("en", "run.queue_pick"), scale=3, elem_id="tb-queue-pick"),
                label="run.queue_pick",
            )
            for action in QUEUE_ACTIONS:
                key = f"queue_{action}"
                elem_id = f"tb-{key.replace('_', '-')}"
                p.queue_buttons[action] = tx.add(
                    gr.Button(i18n.t("en", f"run.{key}"), size="sm", scale=1, elem_id=elem_id),
                    value=f"run.{key}",
                )


def _build_plots(ctx: Ctx, p: RunParts) -> None:
    """A row of live metric plots (PLOTS), with a legend where one plot draws several series."""
    with gr.Row():
        for name in PLOTS:
            colors = {label: COLORS[label] for label in PLOTS[name].values()}
            several = len(colors) > 1  # a legend only where there is something to tell apart
            p.plots[name] = ctx.texts.add(
                gr.LinePlot(
                    None,
                    x="step",
                    y="value",
                    color="series" if several else None,
                    color_map=colors if several else None,
                    height=200,
                    label=i18n.t("en", f"run.{name}"),
                    elem_id=f"tb-{name.replace('_', '-')}",
                    x_title=i18n.t("en", "charts.step"),
                    y_title=" ",
                    color_title=i18n.t("en", "charts.metric") if several else None,
                    min_width=220,
                ),
                label=f"run.{name}",
                x_title="charts.step",
                **({"color_title": "charts.metric"} if several else {}),
            )


def _build_tensorboard(ctx: Ctx, p: RunParts) -> None:
    """TensorBoard in a fold, loaded only when asked (finetune/ui/tensorboard.py serves it)."""
    tx = ctx.texts
    with gr.Accordion(i18n.t("en", "run.tensorboard"), open=False, elem_id="tb-tb-accordion") as acc:
        tx.add(acc, label="run.tensorboard")
        p.tb_open = tx.add(
            gr.Button(i18n.t("en", "run.tb_open"), size="sm", elem_id="tb-tb-open"), value="run.tb_open"
        )
        p.tb_frame = gr.HTML(elem_id="tb-tb-frame")


def _build_config_panel(ctx: Ctx, p: RunParts) -> None:
    """The config of the run on screen (before any run, the form's): its command, YAML, effective values."""
    tx = ctx.texts
    with gr.Accordion(i18n.t("en", "run.config"), open=False, elem_id="tb-config-accordion") as acc2:
        tx.add(acc2, label="run.config")
        p.config_note = gr.Markdown()
        p.cli = tx.add(
            gr.Textbox(label=i18n.t("en", "run.cli"), interactive=False, elem_id="tb-cli", buttons=["copy"]),
            label="run.cli",
        )
        p.download = tx.add(
            gr.DownloadButton(i18n.t("en", "run.download"), size="sm", elem_id="tb-download"),
            label="run.download",
        )
        p.effective = tx.add(
            gr.Code(
                language="yaml",
                label=i18n.t("en", "run.effective"),
                lines=14,
                max_lines=30,
                interactive=False,
                elem_id="tb-effective",
            ),
            label="run.effective",
        )


# ---------------------------------------------------------------- following a run (finetune/runs.py)


def follow_run(ctx: Ctx, run_id: str | None) -> dict[str, Any]:
    """runs.attach as the page does it: the status reconciled with the process, so a dead run shows failed."""
    return runs.attach(ctx.runs_root, run_id, status_of=jobs.reconcile)


def poll_run(ctx: Ctx, follow: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    """runs.poll with the status reconciled, as :func:`follow_run`."""
    return runs.poll(ctx.runs_root, follow, status_of=jobs.reconcile)


def latest_run(ctx: Ctx) -> str | None:
    """The run a page shows on load: the newest live one, else the first queued, else the newest."""
    return runs.latest_run(ctx.runs_root, scheduler.queue, status_of=jobs.reconcile)


# ---------------------------------------------------------------- rendering


def view(
    ctx: Ctx, follow: dict[str, Any], lang: str, *, plots: bool = True, log: bool = True
) -> dict[Any, Any]:
    p = ctx.run
    status = follow.get("status") or {}
    waiting = scheduler.queue(ctx.runs_root)
    queue_changed = follow.get("queue") != waiting or follow.get("fresh")
    config = config_updates(ctx, follow, lang)
    follow = {**follow, "queue": waiting, "effective": config.pop("effective", follow.get("effective"))}
    rows = follow.get("rows") or []
    controls = {  # what the page shows of them now: a tick leaves out what is unchanged
        "stop": st.is_active(status),
        "resume": status.get("state") in st.RESUMABLE_STATES,
        "timer": bool(follow.get("run")),
    }
    shown = {} if follow.get("fresh") else follow.get("shown") or {}
    redraw = plots and _plots_due(follow, status)
    plotted = bool(follow.get("plotted")) or (redraw and bool(rows))
    out: dict[Any, Any] = {
        p.progress: live_line(follow["run"], status, rows, waiting, lang, plotted=plotted)
        if follow.get("run")
        else charts.no_run(lang),
        **(queue_view(ctx, waiting, lang) if queue_changed else {}),
        **config,
    }
    if shown.get("stop") != controls["stop"]:
        out[p.stop] = gr.update(interactive=controls["stop"])
    if shown.get("resume") != controls["resume"]:
        out[p.resume] = gr.update(interactive=controls["resume"])
    if shown.get("timer") != controls["timer"]:
        # Never off while a run is on screen, finished or not, so a late tick from before a Start can
        # never leave the page frozen on the old run.
        out[p.timer] = gr.Timer(PLOT_EVERY, active=controls["timer"])
    follow = {**follow, "shown": controls}
    if redraw:
        for name, keys in PLOTS.items():
            out[p.plots[name]] = charts.metric_frame(rows, keys)
        follow = {**follow, "plotted": len(rows), "plotted_at": time.monotonic()}
    if log:
        out[p.log] = charts.log_box(follow.get("log") or [], follow.get("run"), follow.get("log_off"))
    return {p.follow: follow, **out}


def _plots_due(follow: dict[str, Any], status: dict[str, Any]) -> bool:
    """Redraw the plots for new points at most every PLOT_EVERY seconds while a run trains (each redraw
    costs the browser CPU the trainer shares on a small machine), at once for the first points or a run
    that has ended."""
    if len(follow.get("rows") or []) == follow.get("plotted") and not follow.get("fresh"):
        return False
    if follow.get("fresh") or not follow.get("plotted") or not st.is_active(status):
        return True
    return time.monotonic() - follow.get("plotted_at", 0.0) >= PLOT_EVERY


def live_line(
    run_id: str,
    status: dict[str, Any],
    rows: list[dict[str, Any]],
    waiting: list[str],
    lang: str,
    *,
    plotted: bool = True,
) -> str:
    """The progress bar in the wrapper live.js follows: which run, in which language, the state and queue
    this view drew, and whether its plots have points (live.js asks for a redraw when any of it changes)."""
    state = status.get("state") or st.UNKNOWN
    queue = json.dumps(waiting, separators=(",", ":"), ensure_ascii=False)  # as JSON.stringify writes it
    attrs = {"run": run_id, "lang": lang, "state": state, "queue": queue, "plotted": int(plotted)}
    data = " ".join(f"data-{key}='{charts.esc(value)}'" for key, value in attrs.items())
    return f"<div class='tb-live' {data}>{progress_bar(run_id, status, rows, waiting, lang)}</div>"


def progress_bar(
    run_id: str, status: dict[str, Any], rows: list[dict[str, Any]], waiting: list[str], lang: str
) -> str:
    """The run's state, step, elapsed time and ETA over a bar; a queued run's place in the queue."""
    if run_id in waiting:
        where = i18n.t(lang, "run.queue_position", pos=waiting.index(run_id) + 1, n=len(waiting))
        status = status | {"reason": where}
    return charts.progress_bar(status, runs.progress(status, rows=rows), lang)


def config_updates(ctx: Ctx, follow: dict[str, Any], lang: str) -> dict[Any, Any]:
    """The config panel of the run on screen: when that run changes, and again once its effective config
    exists (a queued or starting run has none until its pre-run check passes). Key "effective": whether
    effective_config.yaml was there, for the follow state."""
    run_id = follow.get("run")
    if not run_id:
        return {}
    written = (ctx.runs_root / run_id / "effective_config.yaml").is_file()
    if not follow.get("fresh") and written == bool(follow.get("effective")):
        return {}
    views = config_view(ctx, follow, lang, None)
    return {**dict(zip(ctx.run.config_panel(), views, strict=True)), "effective": written}


def queue_view(ctx: Ctx, waiting: list[str], lang: str) -> dict[Any, Any]:
    """The shared queue: a numbered list and the controls to reorder or cancel an entry."""
    p = ctx.run
    rows = "".join(f"<li>{charts.esc(run_id)}</li>" for run_id in waiting)
    head = charts.esc(i18n.t(lang, "run.queue_head", n=len(waiting)))
    return {
        p.queue_group: gr.Group(visible=bool(waiting)),
        p.queue_table: f"<div class='tb-queue'><b>{head}</b><ol>{rows}</ol></div>" if waiting else "",
        p.queue_pick: gr.update(choices=waiting, value=waiting[0] if waiting else None),
    }


def outputs(ctx: Ctx) -> list[Any]:
    p = ctx.run
    queue = [p.queue_group, p.queue_table, p.queue_pick]
    return [p.follow, p.progress, p.stop, p.resume, p.timer, p.log, *queue,
            *(p.plots[n] for n in PLOTS), *p.config_panel()]  # fmt: skip


# ---------------------------------------------------------------- wiring


def wire(ctx: Ctx) -> None:
    outs = outputs(ctx)
    _wire_timer(ctx, outs)
    _wire_start_stop_resume(ctx, outs)
    _wire_queue(ctx, outs)
    _wire_watching(ctx, outs)
    p = ctx.run
    view = lambda d: config_view(ctx, d[p.follow], d[ctx.lang], d)  # noqa: E731
    ctx.follow_analysis(view, ctx.form(p.follow), p.config_panel())


def _wire_timer(ctx: Ctx, outs: list[Any]) -> None:
    """Each tick (or a refresh live.js asks for) reads what the watched run wrote since the last one."""
    p = ctx.run

    def tick(follow: dict, watched: str | None, lang: str) -> dict:
        # The Run dropdown names the run on screen; only user actions set it. A tick that began before a
        # Start may still return the previous run's state: the next tick sees the mismatch and re-attaches.
        if watched and follow.get("run") != watched:
            return view(ctx, follow_run(ctx, watched), lang)
        if not follow.get("run"):
            return {p.timer: gr.Timer(active=False)}
        follow, _, new_log = poll_run(ctx, follow)
        return view(ctx, follow, lang, log=new_log)  # plots: when due (_plots_due)

    for trigger in (p.timer.tick, p.refresh.click):
        trigger(tick, [p.follow, p.watch, ctx.lang], outs, show_progress="hidden", concurrency_limit=None)


def _wire_start_stop_resume(ctx: Ctx, outs: list[Any]) -> None:
    """Start queues the form's config as a new run; Stop and Resume act on the run in Watch."""
    p = ctx.run

    def start(d: dict) -> dict:
        lang = d[ctx.lang]
        config, problems = ctx.config_or_problems(d)
        if config is not None:
            try:
                files = previews.run_files(config)  # checked where torch lives, not in this process
                run_dir = scheduler.submit(config, ctx.runs_root, files=files)
            except Exception as exc:  # noqa: BLE001 - TuneboardError, OS errors: shown, not raised
                problems = engine_problems(exc)
        if problems:
            fields = any(problem.path for problem in problems)  # else: the disk, the data directory...
            gr.Warning(i18n.t(lang, "run.not_started" if fields else "run.not_started_other"))
            return ctx.show_problems(d, problems)
        out = {**view(ctx, follow_run(ctx, run_dir.name), lang), p.watch: watch_choices(ctx, run_dir.name)}
        return merge(out, ctx.show_problems(d, []))

    start_outputs = list(dict.fromkeys([*outs, p.watch, *ctx.analysis_outputs()[1:]]))
    p.start.click(start, ctx.form(p.follow), start_outputs, concurrency_limit=1)

    def stop(watched: str | None, lang: str) -> dict:
        if watched:  # the Run dropdown, not the follow state: a late tick may still hold the previous run
            scheduler.stop(ctx.runs_root / watched)  # a queued run is cancelled
        return view(ctx, follow_run(ctx, watched), lang)

    p.stop.click(stop, [p.watch, ctx.lang], outs)

    def resume(d: dict) -> dict:
        watched, lang = d[p.watch], d[ctx.lang]
        try:
            scheduler.resume(ctx.runs_root / watched, check=previews.check_again)
        except Exception as exc:  # noqa: BLE001 - e.g. the dataset is gone: say so next to its field
            gr.Warning(i18n.t(lang, "run.not_resumed"))
            return ctx.show_problems(d, engine_problems(exc))
        return merge(view(ctx, follow_run(ctx, watched), lang), ctx.show_problems(d, []))

    p.resume.click(resume, ctx.form(p.watch), start_outputs)


def _wire_queue(ctx: Ctx, outs: list[Any]) -> None:
    """Move a waiting run up or down the shared queue, or cancel it."""
    p = ctx.run

    def change(action: str, picked: str | None, follow: dict, lang: str) -> dict:
        if picked:
            if action == "cancel":
                scheduler.cancel(ctx.runs_root / picked)
            else:
                scheduler.move(ctx.runs_root, picked, -1 if action == "up" else 1)
        if follow.get("run"):
            follow, _, _ = poll_run(ctx, follow)
        out = view(ctx, follow, lang, plots=False, log=False)
        if picked and action != "cancel":
            out[p.queue_pick] = gr.update(value=picked)  # keep the pick on the moved run
        return out

    for action in QUEUE_ACTIONS:
        p.queue_buttons[action].click(
            lambda picked, f, lang, a=action: change(a, picked, f, lang),
            [p.queue_pick, p.follow, ctx.lang],
            outs,
            concurrency_limit=1,
        )


def _wire_watching(ctx: Ctx, outs: list[Any]) -> None:
    """What is on screen: the run picked in Watch, in the page's language, with TensorBoard on request."""
    p = ctx.run

    def watch(run_id: str, lang: str) -> dict:
        return view(ctx, follow_run(ctx, run_id), lang)

    p.watch.input(watch, [p.watch, ctx.lang], outs)
    # The progress line in the new language now, not at the next tick (there is none before any run).
    ctx.lang.change(lambda f, lang: view(ctx, f, lang, plots=False, log=False), [p.follow, ctx.lang], outs)
    p.tb_open.click(lambda: tensorboard_frame(), None, p.tb_frame)
    p.watch.focus(lambda current: watch_choices(ctx, current), p.watch, p.watch, show_progress="hidden")


def watch_choices(ctx: Ctx, selected: str | None) -> Any:
    return gr.update(choices=[r.id for r in runs.list_runs(ctx.runs_root)], value=selected)


def tensorboard_frame() -> str:
    # Relative URL: TensorBoard is served by this same server (finetune/ui/tensorboard.py), behind its login.
    return (
        "<div class='tb-tb-wrap'><a href='tensorboard/' target='_blank' rel='noopener'>tensorboard/ ↗</a>"
        "<iframe id='tb-tensorboard' src='tensorboard/' title='TensorBoard' loading='lazy'></iframe></div>"
    )


def config_view(ctx: Ctx, follow: dict | None, lang: str, d: dict | None) -> tuple[str, str, Any, str]:
    """The watched run's effective config, config.yaml and command; before any run, the form's."""
    run_id = (follow or {}).get("run")
    if run_id:
        run_dir = ctx.runs_root / run_id
        effective_path = run_dir / "effective_config.yaml"
        text = effective_path.read_text(encoding="utf-8") if effective_path.is_file() else ""
        cli = shlex.join(["python", *jobs.command(run_dir)[1:]])  # the job's own argv (with accelerate)
        note = i18n.t_md(lang, "run.config_of_run", run=run_id)
        yaml_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
        return note, cli, download_file(yaml_text), text or i18n.t(lang, "run.effective_pending")
    if d is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    config = config_from(d, ctx.binder)
    if config is None:
        return i18n.t(lang, "run.config_invalid"), "", gr.skip(), ""
    try:
        text = dump_yaml(previews.effective_config(config))
    except Exception:  # noqa: BLE001 - invalid trainer arguments: the banner already says why
        text = ""
    preset = f"presets/launch/{config.launch.strategy}.yaml"  # what the run directory's launch.yaml copies
    cli = shlex.join(
        ["python", *jobs.launcher(config.launch, preset), "-m", "finetune", "train", "config.yaml"]
    )
    return i18n.t(lang, "run.config_of_form"), cli, download_file(config.to_yaml()), text
