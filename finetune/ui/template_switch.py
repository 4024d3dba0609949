"""Section 2's answer to a new model: the family's template when the form names another family's preset,
and a note saying so (issue 8: tiny-gemma kept 'llama3.1' under a warning to "keep 'gemma2'").

    (wired by finetune/ui/template_tab.py; engine: finetune/plan.py model_family, presets/templates/)

Only a real change of the model counts: the value it had when the box got the focus is kept, so leaving the
box, or picking the same model, never undoes a template the user chose. 'auto', 'model' and 'custom' follow
the model by themselves and are left alone.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from finetune import config as cfg
from finetune import presets
from finetune.ui import charts, i18n, previews
from finetune.ui.context import Ctx, commits


def wire(ctx: Ctx, analysis: dict[str, Any]) -> None:
    """A new model gets its family's template when the form names another family's preset, and says so."""
    b, p = ctx.binder, ctx.template
    model, name = b.component("model.name_or_path"), b.component("template.name")
    # The value before the user changes it: a blur or a pick without a new model changes nothing.
    model.focus(lambda v: v, model, p.model_seen, show_progress="hidden")
    outputs = [name, p.custom, p.model_seen, p.switch]
    gr.on(commits(model), lambda d: switch_template(ctx, d), ctx.form(p.model_seen), outputs).then(
        **analysis, show_progress="hidden"
    )
    note = lambda d: switch_note(d[p.switch], d[ctx.lang], d[model], d[name])  # noqa: E731
    p.switch.change(note, ctx.form(p.switch), p.note, show_progress="hidden")
    ctx.follow_analysis(note, ctx.form(p.switch), p.note)


def switch_template(ctx: Ctx, d: dict) -> dict[Any, Any]:
    """The form's updates after the model changed (nothing when it did not)."""
    b, p = ctx.binder, ctx.template
    model, name = d[b.component("model.name_or_path")], d[b.component("template.name")]
    if not model or model == d[p.model_seen]:
        return {p.model_seen: gr.skip()}
    out: dict[Any, Any] = {p.model_seen: model, p.switch: {}}
    family = _family(d, b)
    wanted = (family or {}).get("template")
    presets_ = presets.names("templates")
    if wanted in presets_ and name in presets_ and name != wanted:
        if family.get("id") not in (presets.load("templates", name).get("families") or []):
            out[b.component("template.name")] = wanted
            out[p.custom] = gr.update(visible=False)
            out[p.switch] = {
                "model": model,
                "family": family.get("name"),
                "old": name,
                "new": wanted,
            }
    return out


def _family(d: dict, b: Any) -> dict[str, Any] | None:
    family = d[b.component("model.family")]
    try:
        model = cfg.ModelConfig(
            name_or_path=d[b.component("model.name_or_path")], family=None if family == "auto" else family
        )
    except Exception:  # noqa: BLE001 - an invalid model: the analysis says why next to the field
        return None
    return previews.family_of(model)


def switch_note(note: dict[str, Any], lang: str, model: str | None = None, name: str | None = None) -> str:
    """What the last automatic template change did, while the form still shows it (a reset, another model
    or template picked since: nothing to say)."""
    if not note or (model, name) not in ((None, None), (note["model"], note["new"])):
        return ""
    return charts.notes([i18n.t(lang, "template.switched", **note)], "info")
