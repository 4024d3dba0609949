"""Section 3, Tokens: vocabulary size and special tokens, an editor to add and remove tokens, a sample text
split before and after, and a scan of the data for token-like strings the vocabulary lacks.

    (built by finetune/ui/page.py; engine: finetune/tokens.py)
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from finetune.ui import charts, i18n, previews
from finetune.ui.context import Ctx, config_from

COLUMNS = ["token", "special"]
SAMPLE_TEXT = "Hi, <user_name>! こんにちは。"


def table(tokens: list[str], special: Any = True) -> pd.DataFrame:
    flags = [special.get(t, True) if isinstance(special, dict) else bool(special) for t in tokens]
    return pd.DataFrame({"token": tokens, "special": flags}, columns=COLUMNS)


def rows(value: Any) -> list[tuple[str, bool]]:
    """(token, special) pairs from the table's value (a DataFrame, or the dict/list gradio may pass)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = pd.DataFrame(value.get("data") or [], columns=value.get("headers") or COLUMNS)
    frame = value if isinstance(value, pd.DataFrame) else pd.DataFrame(value, columns=COLUMNS)
    out = []
    for token, special in zip(frame.get("token", []), frame.get("special", []), strict=False):
        if isinstance(token, str) and token:
            out.append((token, special if isinstance(special, bool) else str(special).lower() == "true"))
    return out


def to_config(value: Any) -> dict[str, Any]:
    pairs = rows(value)
    if not pairs:
        return {"tokens.add": None, "tokens.special": None}
    flags = {t: s for t, s in pairs}
    uniform = set(flags.values())
    special = uniform.pop() if len(uniform) == 1 else flags
    return {"tokens.add": [t for t, _ in pairs], "tokens.special": None if special is True else special}


def to_ui(config: dict[str, Any]) -> pd.DataFrame:
    section = config.get("tokens") or {}
    return table(section.get("add") or [], section.get("special", True))


def with_tokens(value: Any, new: list[str], special: bool) -> pd.DataFrame:
    pairs = rows(value)
    known = {t for t, _ in pairs}
    pairs += [(t, special) for t in dict.fromkeys(new) if t and t not in known]
    return pd.DataFrame(pairs, columns=COLUMNS) if pairs else table([])


def build(ctx: Ctx) -> None:
    b, tx, p = ctx.binder, ctx.texts, ctx.parts
    tx.add(gr.Markdown(i18n.t("en", "tokens.intro"), elem_classes=["tb-intro"]), value="tokens.intro")
    p["vocab_info"] = gr.HTML(elem_id="tb-vocab-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            with gr.Row():
                p["new_token"] = tx.add(
                    gr.Textbox(
                        label=i18n.t("en", "tokens.new"),
                        info=i18n.field_help("en", "tokens.add"),
                        placeholder="<user_name>",
                        scale=3,
                        elem_id="tb-new-token",
                    ),
                    label="tokens.new",
                    info=lambda lang: i18n.field_help(lang, "tokens.add"),
                )
                p["new_special"] = tx.add(
                    gr.Checkbox(True, label=i18n.t("en", "tokens.special"), scale=1), label="tokens.special"
                )
            p["add_token"] = tx.add(
                gr.Button(i18n.t("en", "tokens.add"), variant="primary", size="sm"), value="tokens.add"
            )
            initial = b.initial.get("tokens") or {}
            p["tokens_table"] = tx.add(
                gr.Dataframe(
                    table(initial.get("add") or [], initial.get("special", True)),
                    headers=COLUMNS,
                    datatype=["str", "bool"],
                    interactive=False,
                    label=i18n.t("en", "tokens.table"),
                    elem_id="tb-tokens-table",
                    max_height=260,
                ),
                label="tokens.table",
            )
            b.custom(
                "tokens.add",
                p["tokens_table"],
                paths=("tokens.add", "tokens.special"),
                to_config=to_config,
                to_ui=to_ui,
                error_target=p["new_token"],
            )
            with gr.Row():
                p["remove_pick"] = tx.add(
                    gr.Dropdown([], multiselect=True, label=i18n.t("en", "tokens.remove_pick"), scale=3),
                    label="tokens.remove_pick",
                )
                p["remove"] = tx.add(
                    gr.Button(i18n.t("en", "tokens.remove"), size="sm", scale=1), value="tokens.remove"
                )
            with gr.Row():
                b.field("tokens.init", gr.Dropdown, choices=["mean_of_pieces", "mean"])
                b.field("tokens.pad", gr.Dropdown, choices=["auto", "add", "eos"])
        with gr.Column(scale=1):
            p["sample"] = tx.add(
                gr.Textbox(
                    SAMPLE_TEXT, label=i18n.t("en", "tokens.sample"), lines=2, elem_id="tb-sample-text"
                ),
                label="tokens.sample",
            )
            p["compare"] = gr.HTML(elem_id="tb-compare")
            p["scan"] = tx.add(gr.Button(i18n.t("en", "tokens.scan"), size="sm"), value="tokens.scan")
            p["scan_result"] = gr.HTML(elem_id="tb-scan")
            p["scan_add"] = tx.add(
                gr.Button(i18n.t("en", "tokens.scan_add"), visible=False, size="sm", variant="primary"),
                value="tokens.scan_add",
            )
            p["scan_found"] = gr.State([])


def wire(ctx: Ctx) -> None:
    p = ctx.parts
    then_analyze = {
        "fn": ctx.run_analysis,
        "inputs": ctx.form(),
        "outputs": ctx.analysis_outputs(),
        "show_progress": "hidden",
    }

    def add(d: dict) -> dict:
        token = (d[p["new_token"]] or "").strip()
        if not token:
            return {p["new_token"]: gr.skip()}
        return {
            p["tokens_table"]: with_tokens(d[p["tokens_table"]], [token], bool(d[p["new_special"]])),
            p["new_token"]: "",
        }

    def remove(d: dict) -> pd.DataFrame:
        drop = set(d[p["remove_pick"]] or [])
        kept = [pair for pair in rows(d[p["tokens_table"]]) if pair[0] not in drop]
        return pd.DataFrame(kept, columns=COLUMNS) if kept else table([])

    inputs = ctx.form(p["new_token"], p["new_special"], p["remove_pick"])
    gr.on(
        [p["add_token"].click, p["new_token"].submit], add, inputs, [p["tokens_table"], p["new_token"]]
    ).then(**then_analyze)
    p["remove"].click(remove, inputs, p["tokens_table"]).then(**then_analyze)
    p["tokens_table"].change(
        lambda v: gr.update(choices=[t for t, _ in rows(v)], value=[]),
        p["tokens_table"],
        p["remove_pick"],
        show_progress="hidden",
    )

    gr.on(
        [ctx.analysis.change, ctx.lang.change],
        lambda d: vocab_info(ctx, d),
        {ctx.analysis, ctx.lang},
        p["vocab_info"],
        show_progress="hidden",
    )
    gr.on(
        [ctx.analysis.change, p["sample"].input],
        lambda d: compare(ctx, d),
        ctx.form(ctx.analysis, p["sample"]),
        p["compare"],
        show_progress="hidden",
        trigger_mode="always_last",
    )
    p["scan"].click(
        lambda d: scan(ctx, d), ctx.form(ctx.analysis), [p["scan_result"], p["scan_add"], p["scan_found"]]
    )
    p["scan_add"].click(
        lambda d: with_tokens(d[p["tokens_table"]], d[p["scan_found"]], True),
        ctx.form(p["scan_found"]),
        p["tokens_table"],
    ).then(**then_analyze)


def vocab_info(ctx: Ctx, d: dict) -> str:
    lang, a = d[ctx.lang], d[ctx.analysis] or {}
    if not a.get("ok"):
        return ""
    cards = charts.cards(
        [
            (i18n.t(lang, "tokens.vocab_before"), f"{a['vocab_before']:,}"),
            (i18n.t(lang, "tokens.vocab_after"), f"{a['vocab_after']:,}"),
            (i18n.t(lang, "tokens.new_count"), len(a.get("new_tokens") or [])),
        ]
    )
    chips = "".join(f"<span class='tb-tok special'>{charts.esc(s)}</span>" for s in a.get("specials") or [])
    head = charts.esc(i18n.t(lang, "tokens.specials"))
    return f"{cards}<div class='tb-sub'>{head}</div><div class='tb-tokens'>{chips}</div>"


def compare(ctx: Ctx, d: dict) -> str:
    lang = d[ctx.lang]
    config = config_from(d, ctx.binder)
    if config is None or not (d[ctx.analysis] or {}).get("ok"):
        return ""
    try:
        split = previews.tokenize_compare(config, d[ctx.parts["sample"]] or "")
    except Exception as exc:  # noqa: BLE001 - shown as a message
        return charts.notes([i18n.problem(lang, str(exc))], "error")
    out = []
    for key in ("before", "after"):
        label = i18n.t(lang, f"tokens.{key}", n=len(split[key]))
        out.append(
            f"<div class='tb-sub' data-testid='tokens-{key}'>{charts.esc(label)}</div>"
            f"<div id='tb-pieces-{key}'>{charts.token_pieces(split[key], show_loss=False)}</div>"
        )
    return "".join(out)


def scan(ctx: Ctx, d: dict) -> tuple[str, Any, list[str]]:
    lang = d[ctx.lang]
    config = config_from(d, ctx.binder)
    if config is None or not (d[ctx.analysis] or {}).get("ok"):
        return charts.notes([i18n.t(lang, "tokens.scan_unavailable")]), gr.update(visible=False), []
    found = previews.scan_token_like(config)
    if not found:
        return (
            f"<div class='tb-empty'>{charts.esc(i18n.t(lang, 'tokens.scan_none'))}</div>",
            gr.update(visible=False),
            [],
        )
    head = "".join(
        f"<th>{charts.esc(i18n.t(lang, f'tokens.scan_{c}'))}</th>" for c in ("token", "count", "status")
    )
    body = "".join(
        f"<tr class='{'missing' if f['missing'] else ''}'><td><code>{charts.esc(f['token'])}</code></td>"
        f"<td>{f['count']}</td>"
        f"<td>{charts.esc(i18n.t(lang, 'tokens.missing' if f['missing'] else 'tokens.known'))}</td></tr>"
        for f in found
    )
    missing = [f["token"] for f in found if f["missing"]]
    button = gr.update(visible=bool(missing), value=i18n.t(lang, "tokens.scan_add_n", n=len(missing)))
    return f"<table class='tb-table'><tr>{head}</tr>{body}</table>", button, missing
