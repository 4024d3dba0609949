"""The end of section 7: evaluate the picked run's weights (base vs tuned, or a classifier's scores) and take
them away (the adapter or merged weights, pushed to the Hub on request).

    (built by finetune/ui/try_tab.py under the chat; engine: finetune/evaluate.py, finetune/export.py,
     run in the inference worker, never in this process)

What a request may name is checked here whatever the browser sent: the run and weights must be listed
(try_tab.chosen_run), the export goes to the run's own export folder only, and a Hub repo must look like
``org/name``. The Hub token comes from the environment (HF_TOKEN) only; the page has no field for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import gradio as gr

from finetune import evaluate
from finetune.errors import TuneboardError
from finetune.ui import charts, eval_view, i18n
from finetune.ui.context import Ctx

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


@dataclass(slots=True)
class AfterParts:
    evaluate: gr.Button | None = None
    with_base: gr.Checkbox | None = None
    result: gr.HTML | None = None
    hold_out: gr.Button | None = None  # offered when the figures come from training records
    merge: gr.Checkbox | None = None
    force: gr.Checkbox | None = None
    repo: gr.Textbox | None = None
    private: gr.Checkbox | None = None
    export: gr.Button | None = None
    exported: gr.Markdown | None = None


def build(ctx: Ctx) -> AfterParts:
    tx, p = ctx.texts, AfterParts()
    with tx.add(gr.Accordion(_t("eval_head"), open=True, elem_id="tb-eval"), label="after.eval_head"):
        tx.add(gr.Markdown(_t("eval_intro"), elem_classes=["tb-intro"]), value="after.eval_intro")
        with gr.Row(equal_height=True):
            p.with_base = _check(ctx, "with_base", True, scale=1)
            p.evaluate = _button(ctx, "evaluate", scale=0, min_width=200, elem_id="tb-evaluate")
        p.result = gr.HTML(elem_id="tb-eval-out")
        p.hold_out = _button(ctx, "hold_out", size="sm", visible=False, elem_id="tb-hold-out")
    with tx.add(gr.Accordion(_t("export_head"), open=False, elem_id="tb-export"), label="after.export_head"):
        tx.add(gr.Markdown(_t("export_intro"), elem_classes=["tb-intro"]), value="after.export_intro")
        with gr.Row(equal_height=True):
            p.merge = _check(ctx, "merge", False, elem_id="tb-export-merge")
            p.force = _check(ctx, "force", False)
        with gr.Row(equal_height=True):
            repo = gr.Textbox(label=_t("repo"), placeholder="org/name", scale=3, elem_id="tb-export-repo")
            p.repo = tx.add(repo, label="after.repo")
            p.private = _check(ctx, "private", True, scale=1)
            p.export = _button(ctx, "export", variant="primary", scale=1, elem_id="tb-export-go")
        p.exported = gr.Markdown(elem_id="tb-exported")
    return p


def _t(key: str) -> str:
    return i18n.t("en", f"after.{key}")


def _check(ctx: Ctx, key: str, value: bool, **kw: Any) -> gr.Checkbox:
    return ctx.texts.add(gr.Checkbox(value, label=_t(key), **kw), label=f"after.{key}")


def _button(ctx: Ctx, key: str, **kw: Any) -> gr.Button:
    return ctx.texts.add(gr.Button(_t(key), **kw), value=f"after.{key}")


def shown(run_dir: Any, weights: str | None, lang: str) -> tuple[str, Any]:
    """The saved evaluation of these weights (or nothing yet), and whether to offer a split."""
    result = evaluate.read(run_dir, weights or "final") if run_dir else None
    if result is None:
        return "", gr.update(visible=False)
    return eval_view.result_html(result, lang), gr.update(visible=result.get("records_from") == "training")


def wire(ctx: Ctx) -> None:
    from finetune.ui import try_tab

    t, p = ctx.try_, ctx.try_.after

    def run_eval(run_id: str | None, weights: str | None, base: bool, lang: str) -> tuple[str, Any]:
        try:
            run_dir = try_tab.chosen_run(ctx.runs_root, run_id, weights)
            t.worker.run(
                "evaluate", run_dir=str(run_dir), checkpoint=try_tab.checkpoint_of(weights), base=bool(base)
            )
        except TuneboardError as exc:
            return f"<div class='tb-notes error'>{charts.esc(str(exc))}</div>", gr.update(visible=False)
        return shown(run_dir, weights, lang)

    p.evaluate.click(
        run_eval, [t.run, t.weights, p.with_base, ctx.lang], [p.result, p.hold_out], concurrency_limit=1
    )
    split = ctx.binder.component("dataset.validation_split")
    p.hold_out.click(lambda: 0.1, None, split).then(
        ctx.run_analysis, ctx.form(), ctx.analysis_outputs(), show_progress="hidden"
    )

    def run_export(run_id: str | None, weights: str | None, merge: bool, force: bool, repo: str | None,
                   private: bool, lang: str) -> str:  # fmt: skip
        repo = (repo or "").strip() or None
        try:
            run_dir = try_tab.chosen_run(ctx.runs_root, run_id, weights)
            if repo and not REPO_ID.match(repo):
                return "⚠ " + i18n.t_md(lang, "after.bad_repo", repo=repo)
            if repo and not os.environ.get("HF_TOKEN"):
                return "⚠ " + i18n.t(lang, "after.no_token")
            request = {"run_dir": str(run_dir), "checkpoint": try_tab.checkpoint_of(weights), "push": repo,
                       "merge": bool(merge), "force": bool(force), "private": bool(private)}  # fmt: skip
            done = t.worker.run("export", **request)
        except TuneboardError as exc:
            return f"⚠ {charts.md_text(str(exc))}"
        lines = [i18n.t(lang, "after.exported", folder=done["folder"])]  # a folder in the run: a code span
        lines += [f"⚠ {charts.md_text(n)}" for n in done["notes"]]
        if done.get("url"):
            lines.append(i18n.t_md(lang, "after.pushed", url=done["url"]))
        return "\n\n".join(lines)

    inputs = [t.run, t.weights, p.merge, p.force, p.repo, p.private, ctx.lang]
    p.export.click(run_export, inputs, p.exported, concurrency_limit=1)
