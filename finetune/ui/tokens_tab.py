"""Section 3, Tokens: vocabulary size and special tokens, an editor to add and remove tokens, a sample text
split before and after, and a scan of the data for token-like strings the vocabulary lacks.

    (built by finetune/ui/page.py; engine: finetune/tokens.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from finetune import config as cfg
from finetune import preflight
from finetune.ui import charts, i18n, previews
from finetune.ui.context import Ctx, config_from

COLUMNS = ["token", "special"]
SAMPLE_TEXT = "Hi, <user_name>! こんにちは。"


def table(tokens: list[str], special: Any = True, lang: str = i18n.DEFAULT_LANG) -> pd.DataFrame:
    """The token table: a token and its special flag a row, headed in ``lang``."""
    flags = [special.get(t, True) if isinstance(special, dict) else bool(special) for t in tokens]
    return frame_of(list(zip(tokens, flags, strict=True)), lang)


def frame_of(pairs: list[tuple[str, bool]], lang: str = i18n.DEFAULT_LANG) -> pd.DataFrame:
    heads = [i18n.t(lang, f"tokens.col_{c}") for c in COLUMNS]
    return pd.DataFrame([list(pair) for pair in pairs], columns=heads)


def rows(value: Any) -> list[tuple[str, bool]]:
    """(token, special) pairs from the table's value (a DataFrame, or the dict/list gradio may pass).

    Read by position: the headers are in the page's language."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get("data") or []
    records = value.values.tolist() if isinstance(value, pd.DataFrame) else list(value)
    out = []
    for row in records:
        token, special = (list(row) + [True, True])[:2]
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


def with_tokens(value: Any, new: list[str], special: bool, lang: str = i18n.DEFAULT_LANG) -> pd.DataFrame:
    pairs = rows(value)
    known = {t for t, _ in pairs}
    pairs += [(t, special) for t in dict.fromkeys(new) if t and t not in known]
    return frame_of(pairs, lang)


@dataclass(slots=True)
class TokensParts:
    """The section's components that its handlers and the other sections use."""

    note: gr.HTML | None = None  # for a task that adds no tokens: the table is kept
    vocab_info: gr.HTML | None = None
    new_token: gr.Textbox | None = None  # also where the table's problems show (it has no help line)
    new_special: gr.Checkbox | None = None
    add_token: gr.Button | None = None
    table: gr.Dataframe | None = None  # the tokens.add / tokens.special field (binder.custom)
    remove_pick: gr.Dropdown | None = None
    remove: gr.Button | None = None
    sample: gr.Textbox | None = None
    compare: gr.HTML | None = None  # the sample split before and after
    scan: gr.Button | None = None
    scan_result: gr.HTML | None = None
    scan_add: gr.Button | None = None
    scan_found: gr.State | None = None  # the missing tokens the last scan found


def build(ctx: Ctx) -> None:
    b, tx = ctx.binder, ctx.texts
    p = ctx.tokens = TokensParts()
    tx.add(gr.Markdown(i18n.t("en", "tokens.intro"), elem_classes=["tb-intro"]), value="tokens.intro")
    p.note = gr.HTML(elem_id="tb-tokens-note")
    p.vocab_info = gr.HTML(elem_id="tb-vocab-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            _build_new_token(ctx, p)
            _build_table(ctx, p)
            _build_remove(ctx, p)
            with gr.Row():
                b.field("tokens.init", gr.Dropdown)
                b.field("tokens.pad", gr.Dropdown)
        with gr.Column(scale=1):
            _build_sample(ctx, p)
            _build_scan(ctx, p)


def _build_new_token(ctx: Ctx, p: TokensParts) -> None:
    """A token to add, whether it is special, and Add."""
    tx = ctx.texts
    with gr.Row():
        p.new_token = tx.add(
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
        p.new_special = tx.add(
            gr.Checkbox(True, label=i18n.t("en", "tokens.special"), scale=1), label="tokens.special"
        )
    p.add_token = tx.add(
        gr.Button(i18n.t("en", "tokens.add"), variant="primary", size="sm"), value="tokens.add"
    )


def _build_table(ctx: Ctx, p: TokensParts) -> None:
    """The tokens to add, bound to tokens.add and tokens.special; its problems show under the new token."""
    b, initial = ctx.binder, ctx.binder.initial.get("tokens") or {}
    p.table = ctx.texts.add(
        gr.Dataframe(
            table(initial.get("add") or [], initial.get("special", True)),
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
        p.table,
        paths=("tokens.add", "tokens.special"),
        to_config=to_config,
        to_ui=to_ui,
        error_target=p.new_token,
    )


def _build_remove(ctx: Ctx, p: TokensParts) -> None:
    """Tokens to take out of the table, and Remove."""
    tx, initial = ctx.texts, ctx.binder.initial.get("tokens") or {}
    with gr.Row():
        p.remove_pick = tx.add(
            gr.Dropdown(
                initial.get("add") or [],
                value=[],
                multiselect=True,
                label=i18n.t("en", "tokens.remove_pick"),
                scale=3,
                elem_id="tb-remove-pick",
            ),
            label="tokens.remove_pick",
        )
        p.remove = tx.add(gr.Button(i18n.t("en", "tokens.remove"), size="sm", scale=1), value="tokens.remove")


def _build_sample(ctx: Ctx, p: TokensParts) -> None:
    """A sample text, split by the tokenizer before and after the token edits."""
    p.sample = ctx.texts.add(
        gr.Textbox(SAMPLE_TEXT, label=i18n.t("en", "tokens.sample"), lines=2, elem_id="tb-sample-text"),
        label="tokens.sample",
    )
    p.compare = gr.HTML(elem_id="tb-compare")


def _build_scan(ctx: Ctx, p: TokensParts) -> None:
    """Scan the data for token-like strings the vocabulary lacks, and add the missing ones at once."""
    tx = ctx.texts
    p.scan = tx.add(gr.Button(i18n.t("en", "tokens.scan"), size="sm"), value="tokens.scan")
    p.scan_result = gr.HTML(elem_id="tb-scan")
    p.scan_add = tx.add(
        gr.Button(i18n.t("en", "tokens.scan_add"), visible=False, size="sm", variant="primary"),
        value="tokens.scan_add",
    )
    p.scan_found = gr.State([])


def wire(ctx: Ctx) -> None:
    then_analyze = {
        "fn": ctx.run_analysis,
        "inputs": ctx.form(),
        "outputs": ctx.analysis_outputs(),
        "show_progress": "hidden",
    }
    _wire_editor(ctx, then_analyze)
    _wire_notes(ctx)
    _wire_sample_and_scan(ctx, then_analyze)


def _wire_editor(ctx: Ctx, then_analyze: dict[str, Any]) -> None:
    """Add and Remove edit the table; the remove list and the headers follow it and the language."""
    p = ctx.tokens

    def add(d: dict) -> dict:
        token = (d[p.new_token] or "").strip()
        if not token:
            return {p.new_token: gr.skip()}
        return {
            p.table: with_tokens(d[p.table], [token], bool(d[p.new_special]), d[ctx.lang]),
            p.new_token: "",
        }

    def remove(d: dict) -> dict:
        # The picked tokens, or else the one typed in the new-token box (a person types the name).
        drop = set(d[p.remove_pick] or []) or {(d[p.new_token] or "").strip()}
        pairs = rows(d[p.table])
        kept = [pair for pair in pairs if pair[0] not in drop]
        typed_gone = len(kept) < len(pairs) and not d[p.remove_pick]
        left = frame_of(kept, d[ctx.lang])
        return {p.table: left, p.new_token: "" if typed_gone else gr.skip()}

    inputs = ctx.form(p.new_token, p.new_special, p.remove_pick)
    gr.on([p.add_token.click, p.new_token.submit], add, inputs, [p.table, p.new_token]).then(**then_analyze)
    p.remove.click(remove, inputs, [p.table, p.new_token]).then(**then_analyze)
    # Whatever changed the table (an edit here, a reload, a new dataset), the remove list shows its tokens.
    removable = lambda v: gr.update(choices=[t for t, _ in rows(v)], value=[])  # noqa: E731
    p.table.change(removable, p.table, p.remove_pick, show_progress="hidden")
    ctx.follow_analysis(lambda d: removable(d[p.table]), {p.table}, p.remove_pick)
    ctx.lang.change(  # the headers in the new language, the same rows
        lambda v, lang: frame_of(rows(v), lang), [p.table, ctx.lang], p.table
    )


def _wire_notes(ctx: Ctx) -> None:
    """The note for a task that adds no tokens, and the vocabulary's numbers and special tokens."""
    p = ctx.tokens
    ctx.follow_analysis(lambda d: task_note(ctx, d), ctx.form(), p.note)
    ctx.follow_analysis(lambda d: vocab_info(ctx, d), {ctx.analysis, ctx.lang}, p.vocab_info)


def _wire_sample_and_scan(ctx: Ctx, then_analyze: dict[str, Any]) -> None:
    """The sample split again as it or the analysis changes; Scan, and adding what it found missing."""
    p = ctx.tokens
    compared = {"fn": lambda d: compare(ctx, d), "inputs": ctx.form(ctx.analysis, p.sample)}
    compared["outputs"] = p.compare
    p.sample.input(**compared, show_progress="hidden", trigger_mode="always_last")
    ctx.follow_analysis(**compared)
    p.scan.click(lambda d: scan(ctx, d), ctx.form(ctx.analysis), [p.scan_result, p.scan_add, p.scan_found])
    p.scan_add.click(
        lambda d: with_tokens(d[p.table], d[p.scan_found], True, d[ctx.lang]),
        ctx.form(p.scan_found),
        p.table,
    ).then(**then_analyze)


def task_note(ctx: Ctx, d: dict) -> str:
    """For a task that adds no tokens (classification): the table is kept for when the task changes back."""
    task = d[ctx.binder.component("task")]
    kept = rows(d[ctx.tokens.table])
    if "tokens.add" not in cfg.UNUSED_BY_TASK.get(task, ()):
        return ""
    key = "tokens.unused_by_task_kept" if kept else "tokens.unused_by_task"
    return charts.notes([i18n.t(d[ctx.lang], key, task=task, n=len(kept))], "info")


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
        split = previews.tokenize_compare(config, d[ctx.tokens.sample] or "")
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
            f"<div class='tb-empty'>{charts.esc(i18n.t(lang, 'tokens.scan_none'))}</div>"
            + unused(config, lang),
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
    return (
        f"<table class='tb-table'><tr>{head}</tr>{body}</table>{unused(config, lang)}",
        button,
        missing,
    )


def unused(config: cfg.Config, lang: str) -> str:
    """The tokens in the table that the data never contains: their new rows would learn nothing."""
    never = previews.unused_tokens(config)
    if not never:
        return ""
    text = i18n.t(lang, "tokens.unused", tokens=", ".join(never), n=preflight.UNUSED_SCAN)
    return charts.notes([text], "warn")
