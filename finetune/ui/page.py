"""The dashboard page: header with the language switch, a problem banner, and the seven sections in gr.Tabs.

    python app.py                      # builds this page and serves it on 127.0.0.1:7860
    .venv/bin/pytest tests/ui tests/e2e -q

The form starts as presets/demo.yaml (tiny local model, bundled sample chats), so Start works at once on a
CPU. Each section is one module with ``build(ctx)`` (layout: one function per panel, its components kept in
the section's dataclass on ``ctx``, e.g. ``ctx.run``) and ``wire(ctx)`` (events: one function per concern);
this module adds what spans sections: the language, the analysis every committed field triggers, and what a
page load does (pick the language, check the form, attach to the newest live run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from finetune import config as cfg
from finetune import explain, hosting, paths
from finetune.ui import (
    charts,
    dataset_tab,
    hparams_tab,
    i18n,
    run_tab,
    runs_tab,
    template_tab,
    tokens_tab,
    try_tab,
)
from finetune.ui.binder import Binder
from finetune.ui.context import Ctx, commits, merge, problems_of

DEMO = Path(__file__).resolve().parent.parent.parent / "presets" / "demo.yaml"
DEMO_DATA = cfg.DatasetConfig().path  # what an unset dataset.path means
LOCALE_JS = (
    (Path(__file__).resolve().parent / "locale.js")
    .read_text(encoding="utf-8")
    .replace("__TRACKER__", json.dumps({lang: t["tracker"] for lang, t in i18n.gradio_texts().items()}), 1)
)
SECTIONS = [
    ("dataset", dataset_tab),
    ("model", template_tab),
    ("tokens", tokens_tab),
    ("hparams", hparams_tab),
    ("run", run_tab),
    ("runs", runs_tab),
    ("try", try_tab),
]
# Gradio's cache (inside HOME) swept every 5 minutes of files older than 15: an upload is moved out at once
# (finetune/uploads.py), a download copied to the browser at once; one posted to /gradio_api/upload
# directly, never used, would otherwise stay there for good.
CACHE_CLEANING = (300, 900)
# Fields whose own handlers run the analysis after doing more (loading a preview, editing the token table,
# giving a new model its family's template).
CHAINED = ("dataset.path", "tokens.add", "model.name_or_path")


def initial_config() -> dict[str, Any]:
    """The embedded default: presets/demo.yaml with every schema field filled in."""
    return cfg.load(DEMO).model_dump(mode="json")


@dataclass(slots=True)
class PageParts:
    """What spans the sections: the header's controls and what the browser remembers."""

    reset: gr.Button | None = None  # back to the embedded default
    lang_radio: gr.Radio | None = None
    stored_lang: gr.BrowserState | None = None  # remembered by the browser: the language,
    stored_form: gr.BrowserState | None = None  # the form (so a reload keeps what was set up),
    stored_tab: gr.BrowserState | None = None  # and the section on screen (a reload stays put)


def build(home: Path, access: paths.Access | None = None) -> gr.Blocks:
    return build_with_ctx(home, access)[0]


def build_with_ctx(home: Path, access: paths.Access | None = None) -> tuple[gr.Blocks, Ctx]:
    """The page and what its sections share (tests use the binder without a browser).

    ``access``: which typed paths the page may open (default: a page only its owner reaches).
    """
    texts = i18n.Texts()
    ctx = Ctx(Path(home), texts, Binder(texts, initial_config(), access or paths.Access()))
    with gr.Blocks(title="Tuneboard", delete_cache=CACHE_CLEANING) as demo:
        _build_states(ctx)
        _build_header(ctx)
        _build_storage_note(ctx)
        ctx.banner = gr.HTML(elem_id="tb-banner")
        _build_sections(ctx)
        _build_glossary(ctx)
        for _, module in SECTIONS:
            module.wire(ctx)
        _wire_tabs(ctx, demo)
        _wire_language(ctx, demo)
        _wire_form(ctx, demo)
        ctx.wire_followers()
    return demo, ctx


def _build_states(ctx: Ctx) -> None:
    """The page's own state: the language, the last analysis, the fields showing a problem; and what the
    browser remembers."""
    ctx.lang = gr.State(i18n.DEFAULT_LANG)
    ctx.analysis = gr.State({})
    ctx.shown = gr.State([])
    p = ctx.page = PageParts()
    p.stored_lang = gr.BrowserState("", storage_key="tuneboard-lang")
    p.stored_form = gr.BrowserState({}, storage_key="tuneboard-form")
    p.stored_tab = gr.BrowserState("", storage_key="tuneboard-tab")


def _build_header(ctx: Ctx) -> None:
    """The name and tagline, Reset, and the language switch."""
    texts, p = ctx.texts, ctx.page
    with gr.Row(elem_id="tb-header", equal_height=True):
        texts.add(gr.HTML(_header("en"), elem_id="tb-title"), value=_header)
        p.reset = texts.add(
            gr.Button(i18n.t("en", "app.reset"), size="sm", scale=0, min_width=160, elem_id="tb-reset"),
            value="app.reset",
        )
        p.lang_radio = gr.Radio(
            [(name, code) for code, name in i18n.LANGS.items()],
            value="en",
            label=" / ".join(i18n.t(code, "app.language") for code in i18n.LANGS),  # read aloud, never shown
            show_label=False,
            container=False,
            elem_id="tb-lang",
            scale=0,
            min_width=220,
        )


def _build_storage_note(ctx: Ctx) -> None:
    """On a Space whose data directory is on its own disk: runs vanish on restart, and how to keep them."""
    if hosting.ephemeral(ctx.home):
        note = lambda lang: i18n.t_md(lang, "app.ephemeral", home=str(ctx.home.resolve()))  # noqa: E731
        ctx.texts.add(gr.Markdown(note("en"), elem_id="tb-ephemeral", elem_classes=["tb-warn"]), value=note)


def _build_sections(ctx: Ctx) -> None:
    """The seven sections, a tab each, each built by its module."""
    with gr.Tabs(elem_id="tb-tabs") as ctx.tabs:
        for key, module in SECTIONS:
            with gr.Tab(i18n.t("en", f"tabs.{key}"), id=key, elem_id=f"tb-tab-{key}") as tab:
                ctx.texts.add(tab, label=f"tabs.{key}")
                ctx.tab[key] = tab
                module.build(ctx)


def _build_glossary(ctx: Ctx) -> None:
    """The words the page uses, folded below the sections."""
    with gr.Accordion(i18n.t("en", "app.glossary"), open=False, elem_id="tb-glossary") as glossary:
        ctx.texts.add(glossary, label="app.glossary")
        ctx.texts.add(gr.HTML(glossary_html("en")), value=glossary_html)


def glossary_html(lang: str) -> str:
    """The words the page uses (epoch, step, LoRA, EOS, ...), each in a sentence or two (finetune/explain)."""
    rows = "".join(
        f"<dt>{charts.esc(i18n.t(lang, f'glossary.{term}'))}</dt><dd>{charts.esc(text)}</dd>"
        for term, text in explain.glossary(lang).items()
    )
    return f"<dl class='tb-glossary'>{rows}</dl>"


def _header(lang: str) -> str:
    return (
        f"<div class='tb-brand'><span class='tb-logo'>▤</span><span class='tb-name'>Tuneboard</span>"
        f"<span class='tb-tagline'>{i18n.t(lang, 'app.tagline')}</span></div>"
    )


def _wire_language(ctx: Ctx, demo: gr.Blocks) -> None:
    texts, radio, stored = ctx.texts, ctx.page.lang_radio, ctx.page.stored_lang
    stale = gr.State(False)  # the drop zone on screen was drawn in another language

    def set_lang(lang: str) -> list[Any]:
        lang = i18n.pick_lang(lang)
        return [lang, lang, True, *texts.updates(lang)]

    redraw = _redraw_upload(ctx, stale)
    outputs = [ctx.lang, stored, stale, *texts.components]
    radio.input(set_lang, radio, outputs, show_progress="hidden", js=LOCALE_JS).then(**redraw[0]).then(
        **redraw[1]
    )
    ctx.lang.change(
        lambda d: ctx.show_problems(d, problems_of(d[ctx.analysis])),
        ctx.form(ctx.analysis),
        ctx.analysis_outputs()[1:],
        show_progress="hidden",
    )

    def on_load(stored_lang: str, request: gr.Request) -> list[Any]:
        accept = request.headers.get("accept-language") if request else None
        lang = i18n.pick_lang(stored_lang, accept)
        drawn = i18n.pick_lang(None, accept)  # Gradio draws its own texts in the browser's language
        if lang == i18n.DEFAULT_LANG:
            return [lang, lang, lang != drawn, *[gr.skip()] * len(texts.components)]
        return [lang, lang, lang != drawn, *texts.updates(lang)]

    demo.load(on_load, stored, [ctx.lang, radio, stale, *texts.components], show_progress="hidden").then(
        None, radio, radio, js=LOCALE_JS
    ).then(**redraw[0]).then(**redraw[1])


def _redraw_upload(ctx: Ctx, stale: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two steps that redraw the drop zone after a language switch: Gradio draws a File's own texts
    once, in the language of that moment, so it is hidden (taken off the page) and shown again. Only when
    its language changed and its group is on screen: a redraw drops a file being uploaded that moment, and
    a hidden group's File is off the page anyway, drawn afresh when the group shows."""
    p = ctx.dataset

    def step(visible: bool) -> dict[str, Any]:
        def fn(is_stale: bool, source: str) -> Any:
            return gr.update(visible=visible) if is_stale and source == "upload" else gr.skip()

        return {"fn": fn, "inputs": [stale, p.source], "outputs": p.upload, "show_progress": "hidden"}

    return step(False), step(True)


def _wire_tabs(ctx: Ctx, demo: gr.Blocks) -> None:
    """Remember the section on screen, and open it again after a reload."""
    stored = ctx.page.stored_tab
    for key, _ in SECTIONS:
        ctx.tab[key].select(lambda k=key: k, None, stored, show_progress="hidden")
    keys = [key for key, _ in SECTIONS]
    demo.load(
        lambda key: gr.Tabs(selected=key) if key in keys else gr.skip(),
        stored,
        ctx.tabs,
        show_progress="hidden",
    )


def _wire_form(ctx: Ctx, demo: gr.Blocks) -> None:
    """Analysis on every committed field; restore the remembered form on load; reset to the default."""
    binder, stored = ctx.binder, ctx.page.stored_form
    own = [f.component for f in binder.fields.values() if f.path not in CHAINED]
    analyze = {"fn": ctx.run_analysis, "inputs": ctx.form(), "outputs": ctx.analysis_outputs()}
    gr.on(commits(*own), **analyze, show_progress="hidden", trigger_mode="always_last")
    ctx.follow_analysis(lambda d: binder.raw(d, keep_unused=True), ctx.form(), stored)

    ds = ctx.dataset
    source = [ds.source, ds.builtin, ds.hub_id, *ds.groups()]
    form_outputs = list(
        dict.fromkeys([*binder.components, ctx.hparams.lora_group, ctx.template.custom, *source])
    )
    preview = {
        "fn": lambda d: dataset_tab.refresh_preview(ctx, d),
        "inputs": ctx.form(),
        "outputs": dataset_tab.preview_outputs(ctx),
    }

    def attach_latest(lang: str, chosen: str | None) -> dict[Any, Any]:
        run_id = chosen or run_tab.latest_run(ctx)  # never override a run the user picked
        follow = run_tab.follow_run(ctx, run_id)
        return {**run_tab.view(ctx, follow, lang), ctx.run.watch: run_tab.watch_choices(ctx, run_id)}

    watch = ctx.run.watch
    # Its own event, beside the (slower) form checks: a reload shows the live run at once.
    demo.load(attach_latest, [ctx.lang, watch], [*run_tab.outputs(ctx), watch], show_progress="hidden")
    demo.load(
        lambda raw: form_updates(ctx, raw) if raw else {ctx.hparams.lora_group: gr.skip()},
        stored,
        form_outputs,
        show_progress="hidden",
    ).then(**analyze, show_progress="hidden").then(**preview, show_progress="hidden")
    ctx.page.reset.click(lambda: form_updates(ctx, cfg.load(DEMO).user_dict()), None, form_outputs).then(
        **analyze, show_progress="hidden"
    ).then(**preview, show_progress="hidden")


def form_updates(ctx: Ctx, raw: dict[str, Any]) -> dict[Any, Any]:
    """The whole form from a config mapping, with the parts whose visibility follows a value."""
    values = ctx.binder.load(raw)
    method = values[ctx.binder.component("method")]
    custom = ctx.binder.component("template.custom")
    out = merge(
        values, {custom: gr.update(visible=values[ctx.binder.component("template.name")] == "custom")}
    )
    out[ctx.hparams.lora_group] = gr.Group(visible=method != "full")
    dataset = raw.get("dataset") or {}
    path, fmt = dataset.get("path") or DEMO_DATA, dataset.get("format") or "auto"
    return out | dataset_tab.source_updates(ctx, path, fmt)  # the picker agrees with the path
