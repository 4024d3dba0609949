"""Section 6, Runs: every run in the data directory with state, start, duration, final loss and evaluation
(eval.json, to compare runs); open one to see its curves, log and config, or several to overlay them.

    (built by finetune/ui/page.py; engine: finetune/runs.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from finetune import evaluate, jobs, runs
from finetune.ui import charts, eval_view, i18n, run_tab
from finetune.ui.context import Ctx


@dataclass(slots=True)
class RunsParts:
    """The section's components that its handlers use."""

    refresh: gr.Button | None = None
    count: gr.Markdown | None = None  # "3 runs"
    table: gr.Dataframe | None = None  # one row per run
    open: gr.Dropdown | None = None  # the runs whose curves are drawn; the first one's log and config below
    metric: gr.Dropdown | None = None
    watch: gr.Button | None = None  # follow the first open run in the Run section
    plot: gr.LinePlot | None = None
    legend: gr.HTML | None = None
    scale: gr.State | None = None  # the plot's color_map and y title for the runs drawn (see _wire_compare)
    log: gr.HTML | None = None
    config: gr.Code | None = None


def build(ctx: Ctx) -> None:
    p = ctx.runs = RunsParts()
    _build_listing(ctx, p)
    _build_picker(ctx, p)
    _build_curves(ctx, p)
    _build_log_and_config(ctx, p)


def _build_listing(ctx: Ctx, p: RunsParts) -> None:
    """Refresh, the count, and the table of every run."""
    with gr.Row():
        p.refresh = ctx.texts.add(
            gr.Button(i18n.t("en", "runs.refresh"), size="sm", scale=0, elem_id="tb-runs-refresh"),
            value="runs.refresh",
        )
        p.count = gr.Markdown()
    p.table = gr.Dataframe(interactive=False, wrap=True, max_height=320, elem_id="tb-runs-table")


def _build_picker(ctx: Ctx, p: RunsParts) -> None:
    """Which runs to open and which metric to compare, and Watch to follow one in the Run section."""
    tx = ctx.texts
    with gr.Row():
        p.open = tx.add(
            gr.Dropdown(
                [],
                multiselect=True,
                label=i18n.t("en", "runs.open"),
                info=i18n.t("en", "runs.open_help"),
                scale=3,
                elem_id="tb-runs-open",
            ),
            label="runs.open",
            info="runs.open_help",
        )
        p.metric = tx.add(
            gr.Dropdown(list(runs.METRICS), value="loss", label=i18n.t("en", "runs.metric"), scale=1),
            label="runs.metric",
        )
        p.watch = tx.add(gr.Button(i18n.t("en", "runs.watch"), size="sm", scale=1), value="runs.watch")


def _build_curves(ctx: Ctx, p: RunsParts) -> None:
    """The open runs' curves of one metric overlaid, with a legend naming each run in full."""
    p.plot = ctx.texts.add(
        gr.LinePlot(
            None,
            x="step",
            y="value",
            color="series",
            colors_in_legend=[],  # the legend below names each run in full; the plot's own cuts names short
            height=260,
            label=i18n.t("en", "runs.curves"),
            x_title=i18n.t("en", "charts.step"),
            elem_id="tb-runs-plot",
        ),
        label="runs.curves",
        x_title="charts.step",
    )
    p.legend = gr.HTML(elem_id="tb-runs-legend")
    p.scale = gr.State({})


def _build_log_and_config(ctx: Ctx, p: RunsParts) -> None:
    """The first open run's log and config.yaml, side by side."""
    tx = ctx.texts
    with gr.Row(equal_height=False):
        p.log = run_tab.log_panel(ctx, "runs.log", "tb-runs-log")
        p.config = tx.add(
            gr.Code(
                language="yaml", label=i18n.t("en", "runs.config"), lines=12, max_lines=20, interactive=False
            ),
            label="runs.config",
        )


def table(root: Path, lang: str) -> tuple[pd.DataFrame, str, list[str]]:
    listed = []
    for run in runs.list_runs(root):
        if run.state in runs.LIVE_STATES:  # a job whose process died says so here too
            jobs.reconcile(Path(run.path))
            run = runs.summarize(Path(run.path))
        listed.append(run)
    columns = ("run", "state", "started", "duration", "steps", "loss", "eval")
    heads = [i18n.t(lang, f"runs.col_{c}") for c in columns]
    data = [
        [
            r.id,
            i18n.t(lang, f"states.{r.state}"),
            (r.started_at or "").replace("T", " ")[:19],
            runs.clock(r.duration),
            f"{r.step}/{r.max_steps}" if r.max_steps else "–",
            f"{r.final_loss:.4f}" if r.final_loss is not None else "–",
            eval_view.headline(evaluate.read(Path(r.path))),
        ]
        for r in listed
    ]
    count = i18n.t_md(lang, "runs.count", n=len(listed))
    if any(row[-1].endswith(" *") for row in data):
        count += "  \n" + i18n.t_md(lang, "runs.eval_mark")
    return (
        pd.DataFrame(data, columns=heads),
        count,  # a gr.Markdown
        [r.id for r in listed],
    )


def wire(ctx: Ctx) -> None:
    _wire_listing(ctx)
    _wire_compare(ctx)
    _wire_watch(ctx)


def _wire_listing(ctx: Ctx) -> None:
    """The table and the Open choices, again on Refresh, on opening the section and in a new language."""
    p = ctx.runs

    def refresh(selected: list[str], lang: str) -> tuple:
        frame, count, ids = table(ctx.runs_root, lang)
        keep = [s for s in selected or [] if s in ids]
        return frame, count, gr.update(choices=ids, value=keep)

    gr.on(
        [p.refresh.click, ctx.tab["runs"].select, ctx.lang.change],
        refresh,
        [p.open, ctx.lang],
        [p.table, p.count, p.open],
        show_progress="hidden",
    )


def compared(ctx: Ctx, selected: list[str], metric: str, lang: str) -> tuple:
    """The open runs' curves of ``metric``, the plot's colour scale, the legend, and the first run's log and
    config.yaml (the outputs of :func:`_wire_compare`'s ``show``)."""
    if not selected:
        return None, {}, "", charts.log_box([]), ""
    metric = metric or "loss"
    rows = runs.compare([ctx.runs_root / s for s in selected], metric)
    colors, drawn = charts.run_colors(selected), {r["run"] for r in rows}
    legend = charts.compare_legend(colors, drawn, metric, lang)
    # The map names exactly the runs drawn, so it changes whenever they do; sent after the data (scale()),
    # it makes the plot rebuild its colour scale from them (charts.run_colors says why it must).
    scale = {"color_map": {run: c for run, c in colors.items() if run in drawn}, "y_title": metric}
    plot = charts.compare_frame(rows)
    first = ctx.runs_root / selected[0]
    log, _ = runs.log_tail(first, 200)
    config = first / "config.yaml"
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    return plot, scale, legend, charts.log_box(log), text


def _wire_compare(ctx: Ctx) -> None:
    """A row picked in the table, or a change of the open runs or metric, redraws the comparison."""
    p = ctx.runs

    def show(selected: list[str], metric: str, lang: str) -> tuple:
        return compared(ctx, selected, metric, lang)

    def pick(selected: list[str], evt: gr.SelectData) -> Any:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        ids = [r.id for r in runs.list_runs(ctx.runs_root)]
        if row is None or row >= len(ids):
            return gr.skip()
        return list(dict.fromkeys([*(selected or []), ids[row]]))

    shown = [p.plot, p.scale, p.legend, p.log, p.config]

    def scale(options: dict) -> Any:
        # A second update, once the plot holds the new data: gradio 6.31 applies a color_map sent with the
        # data before the data, and rebuilds the colour scale from the runs drawn before.
        return gr.update(**options) if options else gr.skip()

    rescale = {"fn": scale, "inputs": p.scale, "outputs": p.plot, "show_progress": "hidden"}
    p.table.select(pick, p.open, p.open).then(show, [p.open, p.metric, ctx.lang], shown).then(**rescale)
    gr.on(
        [p.open.input, p.metric.input, ctx.lang.change],
        show,
        [p.open, p.metric, ctx.lang],
        shown,
    ).then(**rescale)


def _wire_watch(ctx: Ctx) -> None:
    """Watch: follow the first open run in the Run section, and go there."""
    p, run = ctx.runs, ctx.run

    def watch(selected: list[str], lang: str) -> dict:
        run_id = (selected or [None])[0]
        follow = run_tab.follow_run(ctx, run_id)
        return {
            **run_tab.view(ctx, follow, lang),
            run.watch: run_tab.watch_choices(ctx, run_id),
            ctx.tabs: gr.Tabs(selected="run"),
        }

    p.watch.click(watch, [p.open, ctx.lang], [*run_tab.outputs(ctx), run.watch, ctx.tabs])
