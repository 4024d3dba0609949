"""Section 2, Model & prompt format: the model, base or instruct, the chat template (the model's own is
detected), and one record rendered exactly as the model will see it, loss-carrying tokens highlighted.

    (built by finetune/ui/page.py; engine: finetune/templates.py, presets/templates/)
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from finetune import builtin, presets, templates
from finetune.ui import charts, i18n, previews, tokens_tab
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


def build(ctx: Ctx) -> None:
    b, tx, p = ctx.binder, ctx.texts, ctx.parts
    tx.add(gr.Markdown(i18n.t("en", "template.intro"), elem_classes=["tb-intro"]), value="template.intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            b.field("model.name_or_path", gr.Dropdown, choices=BUILTIN_MODELS, allow_custom_value=True)
            with gr.Row():
                p["model_kind"] = tx.add(
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
            p["model_info"] = gr.HTML(elem_id="tb-model-info")
            with gr.Accordion(i18n.t("en", "template.model_advanced"), open=False) as acc:
                tx.add(acc, label="template.model_advanced")
                b.field("model.revision", gr.Textbox, convert="text")
                b.field("model.dtype", gr.Dropdown, choices=["auto", "bf16", "fp16", "fp32"])
                b.field(
                    "model.attn_implementation",
                    gr.Dropdown,
                    convert="auto",
                    choices=["auto", "eager", "sdpa", "flash_attention_2"],
                )
                b.field("model.trust_remote_code", gr.Checkbox)
        with gr.Column(scale=1):
            b.field("template.name", gr.Dropdown, choices=_template_choices())
            p["template_custom"] = b.field(
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
            b.field("template.train_on", gr.Radio, choices=["assistant", "all"])
    p["template_warnings"] = gr.HTML(elem_id="tb-template-warnings")
    p["add_missing"] = tx.add(
        gr.Button(i18n.t("en", "template.add_missing"), visible=False, size="sm", variant="primary"),
        value="template.add_missing",
    )
    with gr.Group(elem_classes=["tb-render-box"]):
        with gr.Row():
            p["record"] = tx.add(
                gr.Slider(0, 1, value=0, step=1, label=i18n.t("en", "template.record"), scale=3),
                label="template.record",
            )
            p["render_stats"] = gr.HTML()
        p["legend"] = tx.add(gr.HTML(charts.legend("en")), value=charts.legend)
        p["rendered"] = gr.HTML(elem_id="tb-rendered")


def wire(ctx: Ctx) -> None:
    b, p = ctx.binder, ctx.parts
    name = b.component("template.name")
    name.input(lambda v: gr.update(visible=v == "custom"), name, p["template_custom"])
    refresh = [ctx.analysis.change, ctx.lang.change, p["model_kind"].input]
    gr.on(
        refresh,
        lambda d: info_and_warnings(ctx, d),
        ctx.form(ctx.analysis, p["model_kind"]),
        [p["model_info"], p["template_warnings"], p["add_missing"]],
        show_progress="hidden",
    )
    gr.on(
        [ctx.analysis.change, p["record"].release],
        lambda d: render(ctx, d),
        ctx.form(ctx.analysis, p["record"]),
        [p["rendered"], p["render_stats"], p["record"]],
        show_progress="hidden",
    )

    def add_missing(d: dict) -> Any:
        missing = (d[ctx.analysis] or {}).get("missing_template_tokens") or []
        return tokens_tab.with_tokens(d[p["tokens_table"]], missing, special=True)

    p["add_missing"].click(add_missing, ctx.form(ctx.analysis), p["tokens_table"]).then(
        ctx.run_analysis, ctx.form(), ctx.analysis_outputs(), show_progress="hidden"
    )


def info_and_warnings(ctx: Ctx, d: dict) -> tuple[str, str, Any]:
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    if not a.get("ok"):
        return "", "", gr.update(visible=False)
    facts = [
        (i18n.t(lang, "template.model_type"), a.get("model_type") or "?"),
        (i18n.t(lang, "template.family"), a.get("family_name") or i18n.t(lang, "template.unknown")),
        (
            i18n.t(lang, "template.own_template"),
            a.get("detected_template") or i18n.t(lang, "template.none_detected"),
        ),
        (i18n.t(lang, "template.vocab"), f"{a.get('vocab_before', 0):,}"),
        (i18n.t(lang, "template.in_use"), a.get("template") or "—"),
    ]
    info = charts.cards(facts)
    warnings = []
    instruct = d[ctx.parts["model_kind"]] == "instruct"
    own = a.get("family_template") or a.get("detected_template")
    if instruct and own and a.get("template") not in (own, "model"):
        warnings.append(i18n.t(lang, "template.mismatch", own=own, picked=a.get("template")))
    missing = a.get("missing_template_tokens") or []
    if missing:
        warnings.append(i18n.t(lang, "template.missing_tokens", tokens=", ".join(missing)))
    for w in a.get("warnings") or []:
        if "instruction-tuned with" in w or "which is not a token of this tokenizer" in w:
            continue  # said above, in the user's language and with the model kind taken into account
        warnings.append(i18n.problem(lang, w))
    button = gr.update(visible=bool(missing), value=i18n.t(lang, "template.add_missing_n", n=len(missing)))
    return info, charts.notes(warnings), button


def render(ctx: Ctx, d: dict) -> tuple[str, str, Any]:
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    config = config_from(d, ctx.binder)
    if not a.get("ok") or config is None:
        return f"<div class='tb-empty'>{charts.esc(i18n.t(lang, 'template.no_preview'))}</div>", "", gr.skip()
    try:
        rec = previews.render_record(config, d[ctx.parts["record"]] or 0)
    except (templates.TemplateError, ValueError) as exc:
        return charts.notes([i18n.problem(lang, str(exc))], "error"), "", gr.skip()
    stats = i18n.t(
        lang,
        "template.render_stats",
        tokens=rec.get("tokens", 0),
        loss=rec.get("loss_tokens", 0),
        index=rec["index"] + 1,
        count=rec["count"],
    )
    if rec.get("truncated"):
        stats += " · " + i18n.t(lang, "template.truncated")
    slider = gr.update(maximum=max(rec["count"] - 1, 1), value=rec["index"])
    return (
        charts.token_pieces(rec["pieces"]),
        f"<div class='tb-render-stats'>{charts.esc(stats)}</div>",
        slider,
    )
