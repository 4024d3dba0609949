"""Section 2, Model & prompt format: the model, base or instruct, the chat template (the model's own is
detected), and one record rendered exactly as the model will see it, loss-carrying tokens highlighted.

    (built by finetune/ui/page.py; engine: finetune/templates.py, presets/templates/)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from finetune import builtin, presets, templates
from finetune import config as cfg
from finetune.ui import charts, i18n, previews, template_switch, tokens_tab
from finetune.ui.context import Ctx, config_from

BUILTIN_MODELS = [f"builtin:{name}" for name in builtin.SPECS]


def _template_choices() -> list[tuple[str, str]]:
    out = [("auto", "auto")]
    for name in presets.names("templates"):
        out.append((f"{name} — {presets.load('templates', name).get('name', name)}", name))
    return out + [("model", "model"), ("custom", "custom")]


def _family_choices() -> list[tuple[str, str]]:
    return [("auto", "auto")] + [
        (presets.load("models", f).get("name", f), f) for f in presets.names("models")
    ]


@dataclass(slots=True)
class TemplateParts:
    """The section's components that its handlers and the page use (the fields are the binder's)."""

    model_kind: gr.Radio | None = None  # instruct or base: whether the model's own template is expected
    model_info: gr.HTML | None = None  # the model's facts
    note: gr.HTML | None = None  # what the last automatic template change did (template_switch)
    custom: gr.Code | None = None  # the template.custom field, shown for template "custom"
    warnings: gr.HTML | None = None
    add_missing: gr.Button | None = None  # the fixes the warnings offer, shown with them
    use_own: gr.Button | None = None
    raise_max_length: gr.Button | None = None
    model_seen: gr.State | None = None  # the model the template was matched to
    switch: gr.State | None = None  # the last automatic template change, to say so in either language
    record: gr.Slider | None = None  # which record to render, counted from 1
    render_stats: gr.HTML | None = None
    legend: gr.HTML | None = None
    rendered: gr.HTML | None = None


def build(ctx: Ctx) -> None:
    b, tx = ctx.binder, ctx.texts
    p = ctx.template = TemplateParts()
    tx.add(gr.Markdown(i18n.t("en", "template.intro"), elem_classes=["tb-intro"]), value="template.intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            _build_model(ctx, p)
        with gr.Column(scale=1):
            _build_template(ctx, p)
    p.warnings = gr.HTML(elem_id="tb-template-warnings")
    with gr.Row():
        p.add_missing = _fix_button(ctx, "add_missing")
        p.use_own = _fix_button(ctx, "use_own")
        p.raise_max_length = _fix_button(ctx, "raise_max_length")
    p.model_seen = gr.State(b.initial["model"]["name_or_path"])
    p.switch = gr.State({})
    _build_record_view(ctx, p)


def _build_model(ctx: Ctx, p: TemplateParts) -> None:
    """The model, whether it is a base or an instruct model, its family and facts, and a fold of loading
    options."""
    b, tx = ctx.binder, ctx.texts
    b.field("model.name_or_path", gr.Dropdown, choices=BUILTIN_MODELS, allow_custom_value=True)
    with gr.Row():
        p.model_kind = tx.add(
            gr.Radio(
                [("instruct", "instruct"), ("base", "base")],
                value="instruct",
                label=i18n.t("en", "template.kind"),
                info=i18n.t("en", "template.kind_help"),
            ),
            label="template.kind",
            info="template.kind_help",
            choices=[("template.kind_instruct", "instruct"), ("template.kind_base", "base")],
        )
        b.field("model.family", gr.Dropdown, convert="auto", choices=_family_choices())
    p.model_info = gr.HTML(elem_id="tb-model-info")
    with gr.Accordion(i18n.t("en", "template.model_advanced"), open=False) as acc:
        tx.add(acc, label="template.model_advanced")
        b.field("model.revision", gr.Textbox, convert="text")
        b.field("model.dtype", gr.Dropdown)
        b.field(
            "model.attn_implementation",
            gr.Dropdown,
            convert="auto",
            choices=["auto", "eager", "sdpa", "flash_attention_2"],
        )
        b.field("model.trust_remote_code", gr.Checkbox)


def _build_template(ctx: Ctx, p: TemplateParts) -> None:
    """The chat template (a preset, the model's own, or custom), the system prompt, and what carries loss."""
    b = ctx.binder
    b.field("template.name", gr.Dropdown, choices=_template_choices())
    p.note = gr.HTML(elem_id="tb-template-note")
    p.custom = b.field(
        "template.custom",
        gr.Code,
        convert="text",
        language="jinja2",
        show_help=False,
        visible=False,
        lines=8,
        error_target=b.component("template.name"),
    )
    b.field("template.system_prompt", gr.Textbox, convert="text", lines=2)
    b.field("template.train_on", gr.Radio)


def _fix_button(ctx: Ctx, key: str) -> gr.Button:
    """A button that applies the fix a warning names (hidden until the warning shows)."""
    return ctx.texts.add(
        gr.Button(i18n.t("en", f"template.{key}"), visible=False, size="sm", variant="primary"),
        value=f"template.{key}",
    )


def _build_record_view(ctx: Ctx, p: TemplateParts) -> None:
    """One record rendered as the model sees it, loss-carrying tokens highlighted, and a slider to pick it."""
    tx = ctx.texts
    with gr.Group(elem_classes=["tb-render-box"]):
        with gr.Row():
            # Counted from 1, as its label ("record 1 of 120") and a person count.
            p.record = tx.add(
                gr.Slider(1, 2, value=1, step=1, label=i18n.t("en", "template.record"), scale=3),
                label="template.record",
            )
            p.render_stats = gr.HTML(elem_id="tb-render-stats")
        p.legend = tx.add(gr.HTML(charts.legend("en")), value=charts.legend)
        p.rendered = gr.HTML(elem_id="tb-rendered")


def wire(ctx: Ctx) -> None:
    p = ctx.template
    name = ctx.binder.component("template.name")
    analysis = {"fn": ctx.run_analysis, "inputs": ctx.form(), "outputs": ctx.analysis_outputs()}
    name.input(lambda v: (gr.update(visible=v == "custom"), {}), name, [p.custom, p.switch])
    info = {
        "fn": lambda d: info_and_warnings(ctx, d),
        "inputs": ctx.form(ctx.analysis, p.model_kind),
        "outputs": [p.model_info, p.warnings, p.add_missing, p.use_own, p.raise_max_length],
    }
    p.model_kind.input(**info, show_progress="hidden")
    ctx.follow_analysis(**info)
    shown = {
        "fn": lambda d: render(ctx, d),
        "inputs": ctx.form(ctx.analysis, p.record),
        "outputs": [p.rendered, p.render_stats, p.record],
    }
    # .input too: typing a number in the slider's box gives no release until the box loses focus.
    gr.on([p.record.release, p.record.input], **shown, show_progress="hidden", trigger_mode="always_last")
    ctx.follow_analysis(**shown)
    template_switch.wire(ctx, analysis)
    _wire_fixes(ctx, analysis)


def _wire_fixes(ctx: Ctx, analysis: dict[str, Any]) -> None:
    """The fix buttons: add the template's missing tokens, use the model's own template, raise max_length."""
    b, p, table = ctx.binder, ctx.template, ctx.tokens.table

    def add_missing(d: dict) -> Any:
        missing = (d[ctx.analysis] or {}).get("missing_template_tokens") or []
        return tokens_tab.with_tokens(d[table], missing, special=True, lang=d[ctx.lang])

    p.add_missing.click(add_missing, ctx.form(ctx.analysis), table).then(**analysis, show_progress="hidden")
    name = b.component("template.name")
    p.use_own.click(lambda d: own_template(d[ctx.analysis]), ctx.form(ctx.analysis), name).then(
        **analysis, show_progress="hidden"
    )
    max_length = b.component("dataset.max_length")
    p.raise_max_length.click(
        lambda a: ((a or {}).get("lengths") or {}).get("truncation", {}).get("suggest") or gr.skip(),
        ctx.analysis,
        max_length,
    ).then(**analysis, show_progress="hidden")


def own_template(analysis: dict[str, Any] | None) -> Any:
    a = analysis or {}
    return a.get("family_template") or a.get("detected_template") or gr.skip()


def info_and_warnings(ctx: Ctx, d: dict) -> tuple[Any, ...]:
    """The model's facts and every warning about the model, template and records, each saying what the page
    shows; and the buttons that apply their fixes."""
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    hidden = gr.update(visible=False)
    if not a.get("ok"):
        return "", "", hidden, hidden, hidden
    config = config_from(d, ctx.binder)
    if config is not None and a.get("key") not in (None, previews.key_of(config)):
        return (gr.skip(),) * 5  # an analysis of a form changed since (a new model): its own result follows
    sft = a.get("task", "sft") == "sft"
    own = a.get("family_template") or a.get("detected_template")
    mismatch = (
        sft and d[ctx.template.model_kind] == "instruct" and own and a.get("template") not in (own, "model")
    )
    missing = a.get("missing_template_tokens") or []
    trunc = (a.get("lengths") or {}).get("truncation")
    warnings = _warnings(a, lang, sft=sft, mismatch=mismatch, own=own, missing=missing, trunc=trunc)
    buttons = (
        gr.update(visible=bool(missing), value=i18n.t(lang, "template.add_missing_n", n=len(missing))),
        gr.update(visible=bool(mismatch), value=i18n.t(lang, "template.use_own_named", own=own)),
        gr.update(
            visible=bool(trunc and trunc.get("suggest")),
            value=i18n.t(lang, "template.raise_max_length_to", n=(trunc or {}).get("suggest")),
        ),
    )
    return charts.cards(model_facts(a, lang)), charts.notes(warnings), *buttons


def model_facts(a: dict[str, Any], lang: str) -> list[tuple[str, Any]]:
    """The model's type, family, own template, vocabulary and the template in use, as cards."""
    in_use = a.get("template") or i18n.t(lang, "template.no_template", task=a.get("task"))
    return [
        (i18n.t(lang, "template.model_type"), a.get("model_type") or "?"),
        (i18n.t(lang, "template.family"), a.get("family_name") or i18n.t(lang, "template.unknown")),
        (
            i18n.t(lang, "template.own_template"),
            a.get("detected_template") or i18n.t(lang, "template.none_detected"),
        ),
        (i18n.t(lang, "template.vocab"), f"{a.get('vocab_before', 0):,}"),
        (i18n.t(lang, "template.in_use"), in_use),
    ]


def task_note(a: dict[str, Any], lang: str) -> str:
    """What a task without a template does with a record; for text, its BOS/EOS and rows (packing or not)."""
    if a.get("task") != "text":
        return i18n.t(lang, f"template.task_{a.get('task')}")
    eos = a.get("eos") or "-"
    rows = i18n.t(lang, "template.text_packed" if a.get("packing") else "template.text_rows", eos=eos)
    bos = (
        i18n.t(lang, "template.text_bos", bos=a["bos"])
        if a.get("bos")
        else i18n.t(lang, "template.text_no_bos")
    )
    return " ".join(
        [i18n.t(lang, "template.task_text"), bos, i18n.t(lang, "template.text_eos", eos=eos), rows]
    )


def _warnings(
    a: dict[str, Any], lang: str, *, sft: bool, mismatch: Any, own: Any, missing: list[str], trunc: Any
) -> list[str]:
    """Every warning in ``lang``: the task, a template that is not the model's own, tokens it lacks, records
    cut at max_length, then the engine's others."""
    warnings = [] if sft else [task_note(a, lang)]
    if mismatch:
        warnings.append(i18n.t(lang, "template.mismatch", own=own, picked=a.get("template")))
    if missing:
        warnings.append(i18n.t(lang, "template.missing_tokens", tokens=", ".join(missing)))
    if trunc:
        warnings.append(charts.truncation_text(trunc, lang))  # the words and counts of section 1
    for w in a.get("warnings") or []:
        if any(said in w for said in SAID_ABOVE):
            continue  # said above, in the user's language and with the model kind taken into account
        warnings.append(i18n.problem(lang, w))
    return warnings


# Engine warnings the section says in its own words above (so never twice, nor in English on a Japanese page).
SAID_ABOVE = (
    "instruction-tuned with",
    "which is not a token of this tokenizer",
    "records are longer than dataset.max_length",
)


def render(ctx: Ctx, d: dict) -> tuple[Any, Any, Any]:
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    asked = d[ctx.template.record]
    if not isinstance(asked, (int, float)):
        return gr.skip(), gr.skip(), gr.skip()  # the number box is being typed in (empty): wait for a number
    config = config_from(d, ctx.binder)
    if not a.get("ok") or config is None:
        return f"<div class='tb-empty'>{charts.esc(i18n.t(lang, 'template.no_preview'))}</div>", "", gr.skip()
    try:
        rec = previews.render_record(config, int(asked) - 1)
    except (templates.TemplateError, ValueError) as exc:
        return charts.notes([i18n.problem(lang, str(exc))], "error"), "", gr.skip()
    count = rec["count"]
    slider = {"maximum": max(count, 2), "interactive": count > 1}
    if rec["index"] + 1 != asked:
        slider["value"] = rec["index"] + 1  # past the end (fewer records now): show where it is
    return charts.token_pieces(rec["pieces"]), record_stats(rec, config, a, lang), gr.update(**slider)


def record_stats(rec: dict[str, Any], config: cfg.Config, a: dict[str, Any], lang: str) -> str:
    """Which record this is, its tokens and what carries loss, for the task; what the template adds."""
    index, count, tokens = rec["index"] + 1, rec["count"], rec.get("tokens", 0)
    stats = i18n.t(lang, "template.render_stats", index=index, count=count, tokens=tokens)
    if config.task == "classification":
        stats += " · " + i18n.t(lang, "template.classification_loss", label=rec.get("label") or "?")
    elif config.task == "text":
        stats += " · " + i18n.t(lang, "template.text_loss", loss=rec.get("loss_tokens", 0))
    else:
        stats += " · " + i18n.t(lang, "template.sft_loss", loss=rec.get("loss_tokens", 0))
    if rec.get("truncated"):
        stats += " · " + i18n.t(lang, "template.truncated", full=rec.get("full_tokens"), n=tokens)
    notes = []
    if config.task == "sft" and a.get("every_record"):
        notes.append(
            i18n.t(lang, "template.every_record", template=a.get("template"), text=a["every_record"])
        )
    out = f"<div class='tb-render-stats'>{charts.esc(stats)}</div>"
    return out + (charts.notes(notes, "info") if notes else "")
