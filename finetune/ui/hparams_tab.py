"""Section 4, Hyperparameters: the common values with a one-line explanation each, preset buttons, an
advanced fold, and a live summary (steps, warmup, checkpoints, learning-rate schedule, memory estimate).

    (built by finetune/ui/page.py; engine: finetune/plan.py, presets/hparams/)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from finetune import config as cfg
from finetune import duration, explain, memory, plan, presets
from finetune.ui import charts, i18n
from finetune.ui.binder import LIVE_PATHS, explanation_html
from finetune.ui.context import Ctx

SCHEDULERS = [
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]
OPTIMIZERS = [
    "adamw_torch_fused",
    "adamw_torch",
    "adamw_8bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "adafactor",
    "sgd",
    "lion_8bit",
]
TRISTATE = [("auto", "auto"), ("on", "on"), ("off", "off")]
TOKEN_BUDGETS = ["auto", "off", "1024", "2048", "4096", "8192"]  # training.micro_batch_tokens (or typed)
# The fields a preset may set; applying one resets the others here to their defaults first.
HPARAM_PREFIXES = ("method", "lora.", "training.")


@dataclass(slots=True)
class HparamsParts:
    """The section's components that its handlers and the page use (the fields are the binder's)."""

    preset_buttons: dict[str, gr.Button] = field(default_factory=dict)  # preset name -> its button
    preset_note: gr.Markdown | None = None  # which preset was applied
    lora_group: gr.Group | None = None  # the LoRA fields, hidden for full fine-tuning
    summary: gr.HTML | None = None  # step arithmetic cards
    schedule: gr.LinePlot | None = None  # the learning rate over the run
    memory: gr.HTML | None = None  # the memory estimate


def build(ctx: Ctx) -> None:
    b, tx = ctx.binder, ctx.texts
    p = ctx.hparams = HparamsParts()
    tx.add(gr.Markdown(i18n.t("en", "hparams.intro"), elem_classes=["tb-intro"]), value="hparams.intro")
    _build_presets(ctx, p)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            b.field("method", gr.Radio)
            _build_length_and_batch(ctx)
            _build_rate_and_checkpoints(ctx)
            _build_lora(ctx, p)
            with gr.Accordion(i18n.t("en", "hparams.advanced"), open=False) as acc:
                tx.add(acc, label="hparams.advanced")
                _build_advanced(ctx)
        with gr.Column(scale=2, elem_classes=["tb-summary-col"]):
            _build_summary(ctx, p)


def _build_presets(ctx: Ctx, p: HparamsParts) -> None:
    """A button per preset under presets/hparams/, and the line saying which one was applied."""
    tx = ctx.texts
    with gr.Row(elem_classes=["tb-presets"]):
        tx.add(gr.Markdown(i18n.t("en", "hparams.presets")), value="hparams.presets")
        for name in presets.names("hparams"):
            p.preset_buttons[name] = tx.add(
                gr.Button(
                    i18n.preset_text("en", "hparams", name, "name"), size="sm", elem_classes=["tb-preset"]
                ),
                value=lambda lang, n=name: i18n.preset_text(lang, "hparams", n, "name"),
            )
    p.preset_note = gr.Markdown()


def _build_length_and_batch(ctx: Ctx) -> None:
    """How long training runs (epochs or steps) and how many records each step sees."""
    b, lib = ctx.binder, cfg.library_defaults()
    with gr.Row():
        b.field(
            "training.num_train_epochs",
            gr.Slider,
            minimum=0.5,
            maximum=100,
            step=0.5,
            fallback=lib["num_train_epochs"],
        )
        b.field("training.max_steps", gr.Number, convert="int", precision=0, fallback=-1, unset=-1)
    with gr.Row():
        b.field(
            "training.per_device_train_batch_size",
            gr.Slider,
            maximum=128,
            step=1,
            fallback=lib["per_device_train_batch_size"],
        )
        b.field(
            "training.gradient_accumulation_steps",
            gr.Slider,
            maximum=64,
            step=1,
            fallback=lib["gradient_accumulation_steps"],
        )


def _build_rate_and_checkpoints(ctx: Ctx) -> None:
    """The learning rate and its schedule; how often the run logs and saves a checkpoint."""
    b, lib = ctx.binder, cfg.library_defaults()
    with gr.Row():
        b.field("training.learning_rate", gr.Number, convert="float", fallback=lib["learning_rate"])
        b.field(
            "training.lr_scheduler_type", gr.Dropdown, choices=SCHEDULERS, fallback=lib["lr_scheduler_type"]
        )
        b.field(
            "training.warmup_ratio",
            gr.Slider,
            maximum=0.5,
            step=0.01,
            fallback=lib["warmup_ratio"],
        )
    with gr.Row():
        b.field("training.logging_steps", gr.Number, convert="float", fallback=lib["logging_steps"])
        b.field("training.save_strategy", gr.Dropdown, fallback=lib["save_strategy"])
        b.field(
            "training.save_steps",
            gr.Number,
            convert="float",
            fallback=lib["save_steps"],
            unset=lib["save_steps"],
        )


def _build_lora(ctx: Ctx, p: HparamsParts) -> None:
    """The LoRA adapter's size and targets, shown unless the method is full fine-tuning."""
    b = ctx.binder
    with gr.Group(visible=b.initial.get("method") != "full") as p.lora_group:
        with gr.Row():
            b.field("lora.r", gr.Slider, step=1)  # bounds: the schema's ge/le
            b.field("lora.lora_alpha", gr.Slider, maximum=512, step=1)  # minimum: the schema's ge
            b.field("lora.lora_dropout", gr.Slider, maximum=0.5, step=0.01)
        b.field("lora.target_modules", gr.Textbox, convert="names")


def _build_summary(ctx: Ctx, p: HparamsParts) -> None:
    """The live summary beside the form: step arithmetic, the learning-rate schedule, the memory estimate."""
    p.summary = gr.HTML(elem_id="tb-summary")
    p.schedule = ctx.texts.add(
        gr.LinePlot(
            None,
            x="step",
            y="value",
            label=i18n.t("en", "hparams.schedule"),
            height=220,
            x_title=i18n.t("en", "charts.step"),
            y_title=i18n.t("en", "charts.learning_rate"),
            elem_id="tb-schedule",
        ),
        label="hparams.schedule",
        x_title="charts.step",
        y_title="charts.learning_rate",
    )
    p.memory = gr.HTML(elem_id="tb-memory")


def _build_advanced(ctx: Ctx) -> None:
    """The fold of less common training arguments: regularisation, optimizer, precision, seed, eval, Hub."""
    b, lib = ctx.binder, cfg.library_defaults()
    with gr.Row():
        for name in ("weight_decay", "max_grad_norm", "warmup_steps"):
            b.field(f"training.{name}", gr.Number, convert="float", fallback=lib[name], unset=lib[name])
    with gr.Row():
        b.field("training.optim", gr.Dropdown, convert="auto", choices=["auto", *OPTIMIZERS])
        b.field("training.gradient_checkpointing", gr.Dropdown, convert="tristate", choices=TRISTATE)
        b.field("training.packing", gr.Dropdown, convert="tristate", choices=TRISTATE)
    with gr.Row():
        b.field("training.train_sampling_strategy", gr.Dropdown, convert="auto")
        b.field("training.padding_free", gr.Dropdown, convert="tristate", choices=TRISTATE)
        b.field(
            "training.micro_batch_tokens",
            gr.Dropdown,
            convert="tokens",
            choices=TOKEN_BUDGETS,
            allow_custom_value=True,
        )
    with gr.Row():
        b.field("training.bf16", gr.Dropdown, convert="tristate", choices=TRISTATE)
        b.field("training.fp16", gr.Dropdown, convert="tristate", choices=TRISTATE)
        b.field("training.tf32", gr.Dropdown, convert="tristate", choices=TRISTATE)
    with gr.Row():
        b.field(
            "training.seed", gr.Number, convert="int", precision=0, fallback=lib["seed"], unset=lib["seed"]
        )
        b.field("training.save_total_limit", gr.Number, convert="int0", precision=0)
        b.field(
            "training.per_device_eval_batch_size",
            gr.Number,
            convert="int",
            precision=0,
            fallback=lib["per_device_eval_batch_size"],
            unset=lib["per_device_eval_batch_size"],
        )
    with gr.Row():
        b.field("training.eval_strategy", gr.Dropdown, convert="auto")
        b.field("training.eval_steps", gr.Number, convert="float0")
        b.field("training.report_to", gr.Textbox, convert="names")
    with gr.Row():
        b.field("training.push_to_hub", gr.Dropdown, convert="tristate", choices=TRISTATE)
        b.field("training.hub_model_id", gr.Textbox, convert="text")


def wire(ctx: Ctx) -> None:
    b, p = ctx.binder, ctx.hparams
    method = b.component("method")
    method.input(lambda v: gr.Group(visible=v != "full"), method, p.lora_group)
    hparam_fields = [f for f in b.fields.values() if f.path.startswith(HPARAM_PREFIXES)]
    outputs = [f.component for f in hparam_fields] + [p.lora_group, p.preset_note]

    def apply(name: str):
        def fn(d: dict) -> dict:
            values = cfg.preset_values(name)
            lib = cfg.library_defaults()
            out: dict[Any, Any] = {}
            for f in hparam_fields:
                try:
                    value = cfg.get_path(values, f.path)
                except KeyError:  # not in the preset: back to the default (a number shows the library's)
                    value = _reset_value(f, lib)
                out[f.component] = f.to_ui(value)
            out[p.lora_group] = gr.Group(visible=values.get("method", "lora") != "full")
            out[p.preset_note] = preset_note(name, d[ctx.lang])
            return out

        return fn

    for name, button in p.preset_buttons.items():
        button.click(apply(name), ctx.form(), outputs).then(
            ctx.run_analysis, ctx.form(), ctx.analysis_outputs(), show_progress="hidden"
        )
    _wire_live_explanations(ctx)
    ctx.follow_analysis(lambda d: render(ctx, d), {ctx.analysis, ctx.lang}, [p.summary, p.schedule, p.memory])


def _wire_live_explanations(ctx: Ctx) -> None:
    """The explanations whose arithmetic uses the form's numbers (effective batch = 2 × 4 × 1 = 8) follow
    those numbers and the language."""
    b = ctx.binder
    boxes = {path: box for path, box in b.explanations.items() if path in LIVE_PATHS}
    inputs = [b.component(path) for path in explain.LIVE_INPUTS.values()]

    def redraw(d: dict) -> dict[Any, str]:
        numbers = b.live_numbers(d)
        return {box: explanation_html(path, d[ctx.lang], numbers) for path, box in boxes.items()}

    gr.on(
        [*(c.change for c in inputs), ctx.lang.change],
        redraw,
        {*inputs, ctx.lang},
        list(boxes.values()),
        show_progress="hidden",
    )


def preset_note(name: str, lang: str) -> str:
    """The Markdown line under the preset buttons: which preset was applied and what it is for."""
    return i18n.t_md(
        lang,
        "hparams.applied",
        name=i18n.preset_text(lang, "hparams", name, "name"),
        description=i18n.preset_text(lang, "hparams", name, "description"),
    )


def _reset_value(f: Any, lib: dict[str, Any]) -> Any:
    """What a hyperparameter field goes back to when a preset does not set it."""
    if f.path.startswith("training.") and isinstance(f.component, (gr.Number, gr.Slider)):
        return lib.get(f.path.split(".", 1)[1]) or 0
    return f.default


def render(ctx: Ctx, d: dict) -> tuple[str, Any, str]:
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    summary = a.get("summary")
    if not summary:
        return f"<div class='tb-empty'>{charts.esc(i18n.t(lang, 'hparams.no_summary'))}</div>", None, ""
    s = summary["steps"]
    items = [
        (i18n.t(lang, "hparams.records"), f"{s['records']:,}"),
        (i18n.t(lang, "hparams.effective_batch"), s["effective_batch"]),
        (i18n.t(lang, "hparams.micro_batches"), f"{s['micro_batches']:,}"),
        (i18n.t(lang, "hparams.optimizer_steps"), f"{s['optimizer_steps']:,}"),
        (i18n.t(lang, "hparams.warmup_steps"), f"{s['warmup_steps']:,}"),
        (i18n.t(lang, "hparams.checkpoints"), s["checkpoints"]),
    ]
    lines = "<br>".join(charts.esc(line) for line in arithmetic(s, lang))
    html = charts.cards(items) + f"<div class='tb-explain' id='tb-steps-explain'>{lines}</div>"
    time_and_memory = duration_html(summary, lang) + memory_html(summary, lang)
    return html, charts.schedule_frame(summary.get("schedule") or []), time_and_memory


def arithmetic(s: dict[str, Any], lang: str) -> list[str]:
    """The step arithmetic in three lines, with each rounding up the Trainer does (plan.rounding) shown where
    it happens: 45 micro-batches at accumulation 4 are 13 updates, not 11, and this says why."""
    steps = plan.Steps(**s)
    r = plan.rounding(steps)
    n = {
        "records": f"{s['records']:,}",
        "batch": i18n.t(lang, "hparams.batch_times_processes", batch=s["batch_size"], n=s["devices"])
        if s["devices"] > 1
        else s["batch_size"],
        "per_epoch": f"{s['micro_batches_per_epoch']:,}",
        "accum": s["grad_accum"],
        "updates": f"{s['updates_per_epoch']:,}",
        "epochs": f"{s['epochs']:g}",
        "steps": f"{s['optimizer_steps']:,}",
        "micro": f"{s['micro_batches']:,}",
        "epochs_run": plan.decimal(s["epochs_run"]),
        "max_steps": s["max_steps"],
    }
    lines = [  # each division, with its rounding written out where the Trainer rounds up
        i18n.t(lang, f"hparams.arithmetic_{part}_rounded", exact=plan.decimal(r[part]), last=s[last], **n)
        if part in r
        else i18n.t(lang, f"hparams.arithmetic_{part}", **n)
        for part, last in (("micro", "last_micro_batch"), ("updates", "last_update"))
    ]
    if s["max_steps"] > 0:
        lines.append(i18n.t(lang, "hparams.arithmetic_max_steps", **n))
    elif "total" in r:
        lines.append(i18n.t(lang, "hparams.arithmetic_total_rounded", exact=plan.decimal(r["total"]), **n))
    else:
        lines.append(i18n.t(lang, "hparams.arithmetic_total", **n))
    return lines


def duration_html(summary: dict[str, Any], lang: str) -> str:
    """How long the run will take, from the speed a run or a calibration measured on this machine."""
    est = summary.get("duration")
    if not est:
        unknown = charts.esc(i18n.t(lang, "hparams.duration_unknown"))
        return f"<div class='tb-duration'>{unknown} <code>python -m finetune calibrate CONFIG</code></div>"
    source = est.get("source") or ""
    if source == "calibration":
        source = i18n.t(lang, "hparams.duration_calibration")
    elif source.startswith("run "):
        source = i18n.t(lang, "hparams.duration_run", run=source.removeprefix("run "))
    text = i18n.t(
        lang,
        "hparams.duration",
        low=human_duration(est["low"], lang),
        high=human_duration(est["high"], lang),
        tokens=f"{est['tokens']:,}",
        rate=f"{est['tokens_per_second']:,.0f}",
        source=source,
    )
    return f"<div class='tb-duration'>{charts.esc(text)}</div>"


def human_duration(seconds: float, lang: str) -> str:
    return duration.human(seconds, {unit: i18n.t(lang, f"hparams.unit_{unit}") for unit in ("h", "min", "s")})


def memory_html(summary: dict[str, Any], lang: str) -> str:
    mem, dev = summary.get("memory"), summary.get("device") or {}
    where = (
        f"{dev.get('name')} ({dev['memory_gb']:.0f} GiB)"
        if dev.get("memory_gb")
        else i18n.t(lang, "hparams.cpu")
    )
    if not mem:
        return (
            f"<div class='tb-memory'>{charts.esc(i18n.t(lang, 'hparams.memory_unknown', device=where))}</div>"
        )
    text = i18n.t(
        lang,
        "hparams.memory",
        total=f"{mem['total']:.2f}",
        weights=f"{mem['weights']:.2f}",
        optimizer=f"{mem['gradients_and_optimizer']:.2f}",
        activations=f"{mem['activations']:.2f}",
        runtime=f"{mem['runtime']:.2f}",
        params=f"{mem['params']:,}",
        trainable=f"{mem['trainable']:,}",
        device=where,
    )
    fits = ""
    if dev.get("memory_gb"):
        ok = mem["total"] <= dev["memory_gb"] * memory.HEADROOM
        verdict = charts.esc(i18n.t(lang, "hparams.fits" if ok else "hparams.too_big"))
        fits = f"<div class='tb-trunc {'ok' if ok else 'warn'}'>{verdict}</div>"
    return f"<div class='tb-memory'>{charts.esc(text)}</div>{fits}"
