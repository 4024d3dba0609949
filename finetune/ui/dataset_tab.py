"""Section 1, Dataset: pick the data (bundled sample, upload, Hub id or path), preview it, map its columns,
and see the token lengths after templating against max_length.

    (built by finetune/ui/page.py; engine: finetune/data.py)
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from finetune import config as cfg
from finetune import data, datafiles, paths, uploads
from finetune.errors import Problem
from finetune.ui import charts, eval_view, i18n, previews, tokens_tab
from finetune.ui.context import Ctx, engine_problems, merge, problems_of

ROLES = tuple(cfg.ColumnMap.model_fields)  # messages, prompt, completion, ..., system
UPLOAD_TYPES = [".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"]
TASK_OF_LAYOUT = {
    "messages": "sft",
    "alpaca": "sft",
    "prompt_completion": "sft",
    "text": "text",
    "classification": "classification",
}
LAYOUT_OF_TASK = {"sft": "prompt_completion", "text": "text", "classification": "classification"}
SOURCES = ("builtin", "upload", "hub")
MAX_COLUMNS = 50  # shown in the preview table
MAX_CHOICES = 200  # offered in each role dropdown (which also takes a typed column name)


@dataclass(slots=True)
class DatasetParts:
    """The section's components that its handlers and the page use (the fields are the binder's)."""

    source: gr.Radio | None = None  # where the data comes from: SOURCES
    builtin_group: gr.Group | None = None  # one group per source, shown for the chosen one
    builtin: gr.Dropdown | None = None
    upload_group: gr.Group | None = None
    upload: gr.File | None = None
    upload_refused: gr.HTML | None = None  # why an upload was refused, under the drop zone
    source_note: gr.HTML | None = None  # the demo's tokens dropped for the user's own data
    hub_group: gr.Group | None = None
    hub_id: gr.Textbox | None = None
    hub_load: gr.Button | None = None
    preview_info: gr.Markdown | None = None
    preview: gr.Dataframe | None = None  # the first rows
    histogram: gr.HTML | None = None  # token lengths against max_length, and where they come from
    lengths_timer: gr.Timer | None = None  # ticks while every record's lengths are counted in the background
    lengths_done: gr.State | None = None  # changes when they are in: the page analyses again
    balance: gr.HTML | None = None  # records per label (classification)

    def groups(self) -> list[Any]:
        """The source groups, in SOURCES' order."""
        return [self.builtin_group, self.upload_group, self.hub_group]


def build(ctx: Ctx) -> None:
    b, tx = ctx.binder, ctx.texts
    p = ctx.dataset = DatasetParts()
    tx.add(gr.Markdown(i18n.t("en", "dataset.intro"), elem_classes=["tb-intro"]), value="dataset.intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            _build_source(ctx, p)
            _build_upload(ctx, p)
            p.source_note = gr.HTML(visible=False, elem_id="tb-source-note")
            _build_hub(ctx, p)
            b.field("dataset.path", gr.Textbox, convert="text")
        with gr.Column(scale=4):
            _build_layout_and_columns(ctx)
    p.preview_info = gr.Markdown()
    p.preview = gr.Dataframe(interactive=False, wrap=True, max_height=300, elem_id="tb-preview")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            p.histogram = gr.HTML(elem_id="tb-histogram")
            p.lengths_timer, p.lengths_done = gr.Timer(1.0, active=False), gr.State(None)
            p.balance = gr.HTML(elem_id="tb-balance")  # a classification dataset's labels
        with gr.Column(scale=2):
            b.field("dataset.max_length", gr.Number, precision=0)
            b.field("dataset.validation_split", gr.Slider, minimum=0.0, maximum=0.5, step=0.01)
            b.field("dataset.max_records", gr.Number, convert="int0", precision=0)
            b.field("dataset.streaming", gr.Checkbox)


def _build_source(ctx: Ctx, p: DatasetParts) -> None:
    """The source picker, and the bundled samples to pick from."""
    tx = ctx.texts
    p.source = tx.add(
        gr.Radio(_source_choices("en"), value="builtin", label=i18n.t("en", "dataset.source")),
        label="dataset.source",
        choices=[(f"dataset.sources.{k}", k) for k in SOURCES],
    )
    with gr.Group(visible=True) as p.builtin_group:
        p.builtin = tx.add(
            gr.Dropdown(
                datafiles.builtin_names(), value="sample-chat", label=i18n.t("en", "dataset.builtin")
            ),
            label="dataset.builtin",
        )


def _build_upload(ctx: Ctx, p: DatasetParts) -> None:
    """The drop zone for the user's own file, and why one was refused."""
    with gr.Group(visible=False) as p.upload_group:
        p.upload = ctx.texts.add(
            gr.File(
                file_types=UPLOAD_TYPES,
                type="filepath",
                interactive=True,  # an output too (redrawn on a language switch): stays a drop zone
                label=i18n.t("en", "dataset.upload"),
                elem_id="tb-upload",
                height=120,
            ),
            label="dataset.upload",
        )
        p.upload_refused = gr.HTML(visible=False, elem_id="tb-upload-refused")


def _build_hub(ctx: Ctx, p: DatasetParts) -> None:
    """A Hugging Face Hub dataset id with its subset and split, and Load."""
    b, tx = ctx.binder, ctx.texts
    with gr.Group(visible=False) as p.hub_group:
        with gr.Row():
            p.hub_id = tx.add(
                gr.Textbox(label=i18n.t("en", "dataset.hub_id"), placeholder="org/name", scale=3),
                label="dataset.hub_id",
            )
            b.field("dataset.subset", gr.Textbox, convert="text", show_help=False, scale=2)
            b.field("dataset.split", gr.Textbox, convert="text", show_help=False, scale=1)
        p.hub_load = tx.add(gr.Button(i18n.t("en", "dataset.hub_load"), size="sm"), value="dataset.hub_load")


def _build_layout_and_columns(ctx: Ctx) -> None:
    """The task, the data's layout and format, and which column plays each role."""
    b = ctx.binder
    b.field("task", gr.Radio)
    with gr.Row():
        b.field("dataset.layout", gr.Dropdown)
        b.field("dataset.format", gr.Dropdown)
    with gr.Group(elem_classes=["tb-columns"]):
        for role in ROLES:
            b.field(
                f"dataset.columns.{role}",
                gr.Dropdown,
                convert="choice",
                choices=[("—", "")],
                visible=role == "messages",
                allow_custom_value=True,
            )


def _source_choices(lang: str) -> list[tuple[str, str]]:
    return [(i18n.t(lang, f"dataset.sources.{k}"), k) for k in SOURCES]


def wire(ctx: Ctx) -> None:
    b, p = ctx.binder, ctx.dataset
    p.source.input(show_source, p.source, p.groups())
    _wire_loading(ctx)
    layout = b.component("dataset.layout")
    columns = [b.component(f"dataset.columns.{r}") for r in ROLES]
    layout.input(lambda d: _role_updates(d[layout], None, b), ctx.form(), columns)
    _wire_summaries(ctx)


def _load_outputs(ctx: Ctx) -> list[Any]:
    """What loading data updates: the preview, the layout, task and mapping, the source picker, the tokens
    (the demo's go with the user's own data) and the problems."""
    b, p = ctx.binder, ctx.dataset
    columns = [b.component(f"dataset.columns.{r}") for r in ROLES]
    return list(
        dict.fromkeys(
            [
                p.preview,
                b.component("dataset.layout"),
                b.component("task"),
                *columns,
                b.component("dataset.path"),
                b.component("dataset.format"),
                p.upload_refused,
                p.source,
                p.builtin,
                p.hub_id,
                *p.groups(),
                p.source_note,
                b.component("tokens.add"),
                *ctx.analysis_outputs()[1:],
            ]
        )
    )


def _wire_loading(ctx: Ctx) -> None:
    """A pick, an upload, a Hub id or a typed path loads a preview, then the form is checked again."""
    p, path = ctx.dataset, ctx.binder.component("dataset.path")

    def load(data_: dict, new_path: str | None = None, fmt: str | None = None) -> dict:
        return load_preview(ctx, data_, new_path, fmt)

    def from_builtin(d: dict) -> dict:
        return load(d, f"builtin:{d[p.builtin]}", "auto")

    def from_upload(d: dict) -> dict:
        if not d[p.upload]:  # the file was removed from the drop zone: keep the form as it is
            return {p.preview: gr.skip()}
        try:
            stored = store_upload(ctx.home, d[p.upload])
        except uploads.UploadError as exc:  # the form keeps its data; the reason shows under the drop zone
            return {p.upload_refused: refused_note(d[ctx.lang], exc.message)}
        return {**load(d, stored, "auto"), p.upload_refused: gr.update(visible=False)}

    def from_hub(d: dict) -> dict:
        return load(d, (d[p.hub_id] or "").strip(), "hub")

    form, load_outputs = ctx.form(p.builtin, p.upload, p.hub_id), _load_outputs(ctx)
    chains = [
        (p.builtin.input, from_builtin),
        (p.upload.upload, from_upload),
        (p.hub_load.click, from_hub),
        (p.hub_id.submit, from_hub),
        (path.submit, load),
        (path.blur, load),
        (ctx.binder.component("dataset.format").input, load),  # read the same path the way picked
    ]
    for trigger, fn in chains:
        trigger(fn, form, load_outputs, show_progress="minimal").then(
            ctx.run_analysis, ctx.form(), ctx.analysis_outputs(), show_progress="hidden"
        )


def _wire_summaries(ctx: Ctx) -> None:
    """The length histogram and the line above the preview follow the analysis and the language."""
    p = ctx.dataset
    _wire_lengths(ctx)
    ctx.follow_analysis(lambda d: _preview_info(ctx, d), {ctx.analysis, ctx.lang}, p.preview_info)
    ctx.follow_analysis(
        lambda d: eval_view.class_balance(
            (d[ctx.analysis] or {}).get("classes") or [],
            (d[ctx.analysis] or {}).get("classes_sampled"),
            d[ctx.lang],
        ),
        {ctx.analysis, ctx.lang},
        p.balance,
    )


def _wire_lengths(ctx: Ctx) -> None:
    """The histogram follows the analysis; while every record is counted, a timer shows how far that is and
    has the page analyse again once the lengths are in."""
    p, shown = ctx.dataset, {ctx.analysis, ctx.lang}
    ctx.follow_analysis(lambda d: lengths_view(d[ctx.analysis], d[ctx.lang]), shown, p.histogram)
    counting = lambda d: gr.Timer(active=bool((d[ctx.analysis] or {}).get("counting")))  # noqa: E731
    ctx.follow_analysis(counting, {ctx.analysis}, p.lengths_timer)
    outputs = [p.histogram, p.lengths_done, p.lengths_timer]
    p.lengths_timer.tick(lambda d: _counted(ctx, d), shown, outputs, show_progress="hidden")
    p.lengths_done.change(ctx.run_analysis, ctx.form(), ctx.analysis_outputs(), show_progress="hidden")


def lengths_view(analysis: dict | None, lang: str) -> str:
    """The length histogram, and under it where its statistics come from when they cover fewer records than
    the data has: a sample, or a sample while every record is counted (how far that count is)."""
    analysis = analysis or {}
    shown = charts.histogram(analysis.get("lengths") or {}, analysis.get("max_length", 0), lang)
    note = lengths_source(analysis, lang)
    return shown + charts.notes([note], "info") if note else shown


def lengths_source(analysis: dict, lang: str) -> str:
    """Where the statistics come from ("Sampled N of M records") and why; "" when from every record."""
    stats = analysis.get("lengths") or {}
    shown = {"count": stats.get("count", 0), "records": stats.get("records", 0)}
    if analysis.get("streamed") and shown["count"]:
        return i18n.t(lang, "dataset.lengths_streamed", count=shown["count"])
    if not shown["count"] or shown["count"] >= shown["records"]:
        return ""
    if not analysis.get("counting"):
        return i18n.t(lang, "dataset.lengths_sampled", **shown)
    state = previews.every_record_state(analysis.get("key", "")) or {}
    if state.get("error"):
        return i18n.t(lang, "dataset.lengths_failed", error=state["error"], **shown)
    percent = 100 * state.get("read", 0) // max(state.get("total", 0), 1)
    return i18n.t(lang, "dataset.lengths_counting", percent=percent, **shown)


def _counted(ctx: Ctx, d: dict) -> dict:
    """A tick of the count: how far it is; once done, a new analysis; a count that failed stops the timer."""
    p, analysis = ctx.dataset, d[ctx.analysis] or {}
    state = previews.every_record_state(analysis.get("key", ""))
    out: dict[Any, Any] = {p.histogram: lengths_view(analysis, d[ctx.lang])}
    if state and state["done"]:
        out[p.lengths_done] = f"{analysis['key']} {time.monotonic()}"  # a new value: .change fires
    if not (state and analysis.get("counting")) or state["done"] or state["error"]:
        out[p.lengths_timer] = gr.Timer(active=False)
    return out


def load_preview(ctx: Ctx, d: dict, new_path: str | None, fmt: str | None) -> dict:
    """Read the first rows of the data, detect layout and columns, and pre-fill the mapping."""
    b = ctx.binder
    path_value = new_path if new_path is not None else (d[b.component("dataset.path")] or "")
    # A typed path or a picked format is the person's own: echoing it back would undo what they did since
    # (a slow answer to the path's blur reset the format picked after it). A pick or an upload sets both.
    out: dict[Any, Any] = {b.component("dataset.path"): path_value if new_path is not None else gr.skip()}
    out[b.component("dataset.format")] = fmt or gr.skip()
    fmt = fmt or d[b.component("dataset.format")] or "auto"
    try:
        source = cfg.DatasetConfig(
            path=path_value,
            format=fmt,
            subset=d[b.component("dataset.subset")] or None,
            split=d[b.component("dataset.split")] or "train",
        )
        if refused := b.access.dataset_problem(source):
            raise data.DataError("dataset.path", refused)
        pv = previews.dataset_preview(source)
    except data.DataError as exc:
        out[ctx.dataset.preview] = None
        return merge(out, ctx.show_problems(d, engine_problems(exc)))
    except Exception as exc:  # noqa: BLE001 - pydantic or reader errors: a message, never a traceback
        return merge(out, ctx.show_problems(d, [Problem("dataset.path", str(exc).splitlines()[0])]))
    out |= source_updates(ctx, path_value, fmt) | demo_tokens_dropped(ctx, d, source, pv)
    task = d[b.component("task")]
    layout = pv["layout"] or LAYOUT_OF_TASK.get(task, "prompt_completion")
    task = TASK_OF_LAYOUT.get(pv["layout"] or "", task)
    out[ctx.dataset.preview] = preview_frame(pv, d[ctx.lang])
    out[b.component("dataset.layout")] = layout
    out[b.component("task")] = task
    for role, update in zip(ROLES, _role_updates(layout, pv, b), strict=False):
        out[b.component(f"dataset.columns.{role}")] = update
    return merge(out, ctx.show_problems(d, []))


def source_updates(ctx: Ctx, path: str, fmt: str) -> dict[Any, Any]:
    """The source picker showing where ``path`` comes from: a bundled sample, a Hub id, or a file."""
    p = ctx.dataset
    name = path.removeprefix("builtin:")
    if path.startswith("builtin:") and name in datafiles.builtin_names():
        kind = "builtin"
    elif fmt == "hub" or (paths.is_hub_id(path) and Path(path).suffix.lower() not in paths.DATA_SUFFIXES):
        kind = "hub"
    else:
        kind = "upload"
    out: dict[Any, Any] = {p.source: kind, **dict(zip(p.groups(), show_source(kind), strict=True))}
    if kind == "builtin":
        out[p.builtin] = name
    elif kind == "hub":
        out[p.hub_id] = path
    return out


def show_source(choice: str) -> tuple:
    return tuple(gr.Group(visible=choice == k) for k in SOURCES)


def demo_tokens_dropped(ctx: Ctx, d: dict, source: cfg.DatasetConfig, pv: dict) -> dict[Any, Any]:
    """The user's own data (not a bundled sample) replaces the demo's: the demo's new tokens go too,
    unless the new rows use them."""
    b, p = ctx.binder, ctx.dataset
    demo = (b.initial.get("tokens") or {}).get("add") or []
    table = b.component("tokens.add")
    current = [token for token, _ in tokens_tab.rows(d.get(table))]
    shown = json.dumps(pv["rows"], ensure_ascii=False)
    own_data = not source.path.startswith("builtin:")  # another bundled sample is still the demo's world
    if not (own_data and demo and current == demo) or any(token in shown for token in demo):
        return {p.source_note: gr.update(visible=False)}
    note = i18n.t(d[ctx.lang], "dataset.demo_tokens_dropped", tokens=", ".join(demo))
    return {
        table: tokens_tab.table([], lang=d[ctx.lang]),
        p.source_note: gr.update(value=charts.notes([note], "info"), visible=True),
    }


def refresh_preview(ctx: Ctx, d: dict) -> dict:
    """The preview table and column choices for the data as configured, keeping the mapping (page load)."""
    b = ctx.binder
    try:
        source = cfg.DatasetConfig(
            path=d[b.component("dataset.path")] or "",
            format=d[b.component("dataset.format")],
            subset=d[b.component("dataset.subset")] or None,
            split=d[b.component("dataset.split")] or "train",
        )
        if b.access.dataset_problem(source):  # the analysis says why, next to the field
            return {ctx.dataset.preview: None}
        pv = previews.dataset_preview(source)
    except Exception:  # noqa: BLE001 - the analysis reports data problems next to the fields
        return {ctx.dataset.preview: None}
    out: dict[Any, Any] = {ctx.dataset.preview: preview_frame(pv, d[ctx.lang])}
    choices = column_choices(pv)
    layout = d[b.component("dataset.layout")]
    roles = set(data.LAYOUTS.get(layout if layout != "auto" else pv["layout"] or "", {})) or {"messages"}
    for role in ROLES:
        out[b.component(f"dataset.columns.{role}")] = gr.update(choices=choices, visible=role in roles)
    return out


def preview_outputs(ctx: Ctx) -> list[Any]:
    return [ctx.dataset.preview, *(ctx.binder.component(f"dataset.columns.{r}") for r in ROLES)]


def _role_updates(layout: str, pv: dict | None, b) -> list[Any]:
    roles = set(data.LAYOUTS.get(layout, {})) or {"messages"}
    updates = []
    for role in ROLES:
        if pv is None:
            updates.append(gr.update(visible=role in roles))
            continue
        choices = column_choices(pv)
        updates.append(gr.update(choices=choices, value=pv["mapping"].get(role, ""), visible=role in roles))
    return updates


def _preview_info(ctx: Ctx, d: dict) -> str:
    lang, analysis = d[ctx.lang], d[ctx.analysis] or {}
    if not analysis.get("ok"):
        problems = problems_of(analysis)
        return i18n.t_md(lang, "dataset.not_ready", n=len(problems)) if problems else ""
    return i18n.t_md(
        lang,
        "dataset.summary_streamed" if analysis.get("streamed") else "dataset.summary",
        records=analysis["records"],
        eval=analysis.get("eval_records", 0),
        layout=analysis["layout"],
        columns=", ".join(f"{k} → {v}" for k, v in (analysis.get("columns") or {}).items()),
    )


def preview_frame(pv: dict[str, Any], lang: str) -> Any:
    """The first rows as a table: the first MAX_COLUMNS columns (a browser tab dies drawing 10,000), with the
    table's label saying how many more there are."""
    shown = pv["columns"][:MAX_COLUMNS]

    def cell(value: Any) -> str:
        if value is None:  # an empty cell: shown empty, as in the spreadsheet, not as JSON's null
            return ""
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 160 else text[:160] + "…"

    frame = pd.DataFrame([[cell(row.get(c)) for c in shown] for row in pv["rows"]], columns=shown)
    hidden = len(pv["columns"]) - len(shown)
    label = (
        i18n.t(lang, "dataset.columns_hidden", shown=len(shown), total=len(pv["columns"])) if hidden else None
    )
    return gr.update(value=frame, label=label, show_label=bool(hidden))


def column_choices(pv: dict[str, Any]) -> list[tuple[str, str]]:
    """Choices for the role dropdowns: the first MAX_CHOICES columns (any other can be typed)."""
    return [("—", ""), *[(c, c) for c in pv["columns"][:MAX_CHOICES]]]


def store_upload(home: Path, uploaded: str) -> str:
    """Check an upload and copy it to HOME/uploads (finetune/uploads.py), then delete Gradio's cached copy.

    Raises uploads.UploadError. The cached copy goes either way: Gradio serves its cache to any client.
    """
    return str(uploads.take(home, Path(uploaded), Path(get_upload_folder())))


def refused_note(lang: str, message: str) -> Any:
    text = html.escape(i18n.t(lang, "dataset.upload_refused", reason=message))
    return gr.update(value=f'<div class="tb-notes error">{text}</div>', visible=True)
