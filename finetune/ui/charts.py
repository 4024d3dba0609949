"""Small HTML/SVG views and plot tables: token-length histogram, token pieces, progress bar, metric frames.

    .venv/bin/pytest tests/ui/test_charts.py -q

Hand-written SVG where gradio's native plots cannot draw it (a histogram with a marker line); everything
user-supplied is HTML-escaped (``esc``), or made literal Markdown text (``md_text``) where a gr.Markdown shows
it. Styles live in style.css (classes ``tb-*``).
"""

from __future__ import annotations

import html
import re
import string
from typing import Any

import pandas as pd

from finetune import runs
from finetune import status as st
from finetune.ui.i18n import t

_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_MD_PUNCTUATION = frozenset(string.punctuation) - _HTML_ENTITIES.keys()
_ASCII_SPACES = re.compile(r"[ \t\r\n\f\v]+")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def md_text(value: Any) -> str:
    """``value`` as literal text inside Markdown: a column name, run id or path shows as typed, not as markup.

    For gr.Markdown (gradio 6.31: marked with GFM, $$ LaTeX, then sanitized HTML). ``& < > " '`` become
    entities, so no tag survives; every other ASCII punctuation mark gets a backslash (CommonMark allows it on
    all of them), which stops emphasis, links, images, code, tables, strikethrough and LaTeX, and, with ``:``
    ``.`` ``@`` escaped, GFM's bare autolinks (http://, www., e-mail). Line breaks become spaces so a value
    cannot open a block (heading, list, code block); the browser collapses the spaces anyway.
    """
    text = _ASCII_SPACES.sub(" ", str(value))
    return "".join(_HTML_ENTITIES.get(c) or (f"\\{c}" if c in _MD_PUNCTUATION else c) for c in text)


# The histogram's drawing area (SVG units) and the margins kept for its axis labels.
HIST_WIDTH, HIST_HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 190, 44, 30, 12


def histogram(stats: dict[str, Any], max_length: int, lang: str) -> str:
    """SVG bars of token lengths with max_length drawn as a line, and how many records it truncates."""
    hist = stats.get("histogram") or {}
    counts, edges = hist.get("counts") or [], hist.get("edges") or []
    if not counts:
        return f"<div class='tb-empty'>{esc(t(lang, 'dataset.no_lengths'))}</div>"
    svg = _histogram_svg(counts, edges, max_length, t(lang, "dataset.histogram"))
    kind = "warn" if stats.get("over_max", 0) else "ok"
    return (
        f"<div class='tb-hist'>{svg}<div class='tb-caption'>{esc(_length_caption(stats, lang))}</div>"
        f"<div class='tb-trunc {kind}'>{esc(_truncation_line(stats, max_length, lang))}</div></div>"
    )


def _histogram_svg(counts: list[int], edges: list[float], max_length: int, label: str) -> str:
    """The bars (those holding records max_length cuts marked ``over``), the axes and the max_length line."""
    width, height = HIST_WIDTH, HIST_HEIGHT
    lo, hi = edges[0], max(edges[-1], max_length * 1.02 if max_length < edges[-1] * 3 else edges[-1])
    span = max(hi - lo, 1)
    top = max(counts)

    def x(v: float) -> float:
        return PAD_LEFT + (v - lo) / span * (width - PAD_LEFT - 8)

    def y(c: float) -> float:
        return PAD_TOP + (1 - c / top) * (height - PAD_TOP - PAD_BOTTOM)

    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=False):
        cls = "tb-bar over" if b > max_length else "tb-bar"  # holds records that will be cut
        bars.append(
            f"<rect class='{cls}' x='{x(a):.1f}' y='{y(c):.1f}' width='{max(x(b) - x(a) - 1, 1):.1f}' "
            f"height='{y(0) - y(c):.1f}'><title>{a:.0f}–{b:.0f}: {c}</title></rect>"
        )
    ticks = [lo + span * i / 4 for i in range(5)]
    axis = "".join(
        f"<text class='tb-tick' x='{x(v):.1f}' y='{height - 10}' text-anchor='middle'>{v:.0f}</text>"
        for v in ticks
    )
    axis += f"<text class='tb-tick' x='{PAD_LEFT - 6}' y='{y(top) + 4:.1f}' text-anchor='end'>{top}</text>"
    axis += f"<text class='tb-tick' x='{PAD_LEFT - 6}' y='{y(0):.1f}' text-anchor='end'>0</text>"
    marker = _max_line(x(max_length), y(0), max_length) if lo <= max_length <= hi else ""
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='{esc(label)}'>"
        f"<line class='tb-axis' x1='{PAD_LEFT}' x2='{width - 8}' y1='{y(0):.1f}' y2='{y(0):.1f}'/>"
        f"{''.join(bars)}{marker}{axis}</svg>"
    )


def _max_line(mx: float, bottom: float, max_length: int) -> str:
    """The max_length line at ``mx`` from the top down to ``bottom``, labelled to its left."""
    return (
        f"<line class='tb-maxline' x1='{mx:.1f}' x2='{mx:.1f}' y1='{PAD_TOP - 6}' y2='{bottom:.1f}'/>"
        f"<text class='tb-maxlabel' x='{mx - 4:.1f}' y='{PAD_TOP + 4}' text-anchor='end'>"
        f"max_length {max_length}</text>"
    )


def _length_caption(stats: dict[str, Any], lang: str) -> str:
    """The lengths in numbers: how many records, shortest, mean, 90th percentile, longest."""
    return t(
        lang,
        "dataset.length_caption",
        count=stats.get("count", 0),
        min=stats.get("min", 0),
        mean=f"{stats.get('mean', 0):.0f}",
        p90=f"{stats.get('p90', 0):.0f}",
        max=stats.get("max", 0),
    )


def _truncation_line(stats: dict[str, Any], max_length: int, lang: str) -> str:
    """How many records max_length cuts and what to do (:func:`truncation_text`), or that it cuts none."""
    if not stats.get("over_max", 0):
        return t(lang, "dataset.none_truncated", max_length=max_length)
    plain = {
        "over": stats.get("over_max", 0),
        "count": stats.get("count", 0),
        "max_length": max_length,
        "longest": stats.get("max"),
    }
    return truncation_text(stats.get("truncation") or plain, lang)


def truncation_text(trunc: dict[str, Any] | None, lang: str) -> str:
    """How many records max_length cuts, what that does for this task and the fix (plan.truncation's data).

    Sections 1 and 2 both show this one text, so their counts cannot disagree.
    """
    if not trunc:
        return ""
    values = {k: trunc[k] for k in ("over", "count", "max_length", "longest")}
    text = t(lang, "dataset.truncated", **values)
    if trunc.get("task"):
        text += " " + t(lang, f"dataset.truncated_effect_{trunc['task']}")
    if "suggest" not in trunc:
        return text
    fix = "dataset.truncated_fix" if trunc["suggest"] else "dataset.truncated_fix_drop"
    return text + " " + t(lang, fix, suggest=trunc["suggest"])


def token_pieces(pieces: list[dict[str, Any]], *, show_loss: bool = True) -> str:
    """Token chips: special tokens outlined, loss-carrying tokens highlighted, whitespace made visible."""
    spans = []
    for p in pieces:
        classes = ["tb-tok"]
        if p.get("special"):
            classes.append("special")
        if show_loss and p.get("loss"):
            classes.append("loss")
        text = p["text"].replace(" ", "·").replace("\t", "⇥")
        text = esc(text).replace("\n", "↵\n")
        ids = ",".join(str(i) for i in p["ids"])
        spans.append(f"<span class='{' '.join(classes)}' title='id {ids}'>{text}</span>")
    return f"<div class='tb-tokens'>{''.join(spans)}</div>"


def legend(lang: str) -> str:
    return (
        "<div class='tb-legend'>"
        f"<span class='tb-tok loss'>{esc(t(lang, 'template.legend_loss'))}</span>"
        f"<span class='tb-tok'>{esc(t(lang, 'template.legend_context'))}</span>"
        f"<span class='tb-tok special'>{esc(t(lang, 'template.legend_special'))}</span>"
        "</div>"
    )


def progress_bar(status: dict[str, Any], prog: dict[str, Any], lang: str) -> str:
    state = status.get("state") or st.UNKNOWN
    pct = prog["fraction"] * 100
    text = t(
        lang,
        "run.progress",
        step=prog["step"],
        total=prog["max_steps"] or "?",
        pct=f"{pct:.0f}",
        elapsed=runs.clock(prog["elapsed"]),
    )
    checking = status.get("checking") if st.is_live(status) else None
    if checking:  # training is over; the stop check (train.stop_check) answers prompts before the end
        limit = runs.clock(checking["limit_s"])
        text += " · " + t(
            lang, "run.checking", answered=checking["answered"], asked=checking["asked"], limit=limit
        )
    elif prog.get("eta") is not None:  # an estimate from the recent pace (runs.progress), so said as one
        text += " · " + t(lang, "run.eta", eta=runs.clock(prog["eta"]))
    reason = status.get("reason")
    extra = f"<div class='tb-reason'>{esc(reason)}</div>" if reason else ""
    return (
        f"<div class='tb-progress state-{esc(state)}'>"
        f"<div class='tb-progress-head'><span class='tb-state'>{esc(t(lang, 'states.' + state))}</span>"
        f"<span class='tb-progress-text'>{esc(text)}</span></div>"
        f"<div class='tb-bar-track'><div class='tb-bar-fill' style='width:{pct:.1f}%'></div></div>"
        f"{extra}</div>"
    )


def no_run(lang: str) -> str:
    """The Run section before any run exists: say so, and what Start will do (not "unknown, step 0/?")."""
    return (
        f"<div class='tb-progress state-none'><div class='tb-no-run'>{esc(t(lang, 'run.no_run'))}</div></div>"
    )


def log_box(lines: list[str], run: str | None = None, offset: int | None = None) -> str:
    """Log lines in a box that stays scrolled to its end (column-reverse), no script needed. With the run
    and the byte offset of train.log its lines end at, the page's live.js appends what follows."""
    text = esc("\n".join(lines)) if lines else ""
    follow = f" data-run='{esc(run)}' data-off='{int(offset)}'" if run and offset is not None else ""
    return f"<div class='tb-logbox'{follow}><pre>{text}</pre></div>"


def cards(items: list[tuple[str, Any]]) -> str:
    """A row of labelled numbers (the live summary)."""
    cells = "".join(
        f"<div class='tb-card'><div class='tb-card-value'>{esc(value)}</div>"
        f"<div class='tb-card-label'>{esc(label)}</div></div>"
        for label, value in items
    )
    return f"<div class='tb-cards'>{cells}</div>"


def notes(messages: list[str], kind: str = "warn") -> str:
    if not messages:
        return ""
    items = "".join(f"<li>{esc(m)}</li>" for m in messages)
    return f"<div class='tb-notes {kind}'><ul>{items}</ul></div>"


def metric_frame(rows: list[dict[str, Any]], keys: dict[str, str]) -> pd.DataFrame | None:
    """Long table {step, value, series} of the metrics in ``keys`` (metric -> series label); None if empty.

    None rather than an empty table: a native plot that first receives an empty table keeps wrong column
    types and never draws its lines (gradio 6.31).
    """
    out = [
        {"step": int(r["step"]), "value": float(r[k]), "series": label}
        for r in rows
        for k, label in keys.items()
        if isinstance(r.get(k), (int, float)) and "step" in r
    ]
    return pd.DataFrame(out) if out else None


def compare_frame(rows: list[dict[str, Any]]) -> pd.DataFrame | None:
    return pd.DataFrame(rows).rename(columns={"run": "series"}) if rows else None


# Distinct on a white page and for the common colour-vision deficiencies first (Okabe-Ito order), then more.
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#7f7f7f", "#000000"]


def run_colors(run_ids: list[str]) -> dict[str, str]:
    """A colour per run, in the order they were picked.

    Given to the compared plot as its color_map, after its data (finetune/ui/runs_tab.py): gradio 6.31's
    LinePlot fixes its colour domain to the series of the data it was built with and rebuilds it only when
    a property such as color_map changes, so without this a run added to the comparison is never drawn.
    """
    return {run_id: PALETTE[i % len(PALETTE)] for i, run_id in enumerate(run_ids)}


def compare_legend(colors: dict[str, str], drawn: set[str], metric: str, lang: str) -> str:
    """The compared runs with their colours and full names (the plot's own legend cuts names at ~25
    characters, and run ids differ only near the middle), and which run the log and config below are of."""
    items = []
    for run_id, color in colors.items():
        missing = "" if run_id in drawn else f" <i>{esc(t(lang, 'runs.no_points', metric=metric))}</i>"
        items.append(
            f"<li><span class='tb-swatch' style='background:{esc(color)}'></span>{esc(run_id)}{missing}</li>"
        )
    below = t(lang, "runs.below", run=next(iter(colors))) if colors else ""
    caption = f"<div class='tb-caption'>{esc(below)}</div>"
    return f"<div class='tb-runs-legend'><ul>{''.join(items)}</ul>{caption}</div>"


def schedule_frame(points: list[tuple[int, float]]) -> pd.DataFrame | None:
    if not points:
        return None
    return pd.DataFrame({"step": [p[0] for p in points], "value": [p[1] for p in points]})
