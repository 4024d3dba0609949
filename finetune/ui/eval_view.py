"""What an evaluation and a classification dataset look like on the page: the class balance as bars, the
confusion matrix as a heat map (SVG), the figures base vs tuned, and a few records with their answers.

    (used by finetune/ui/after_tab.py, dataset_tab.py and runs_tab.py; tests/ui/test_after_tab.py)

Every label and text comes from the user's data or a model: all of it is HTML-escaped (charts.esc).
"""

from __future__ import annotations

from typing import Any

from finetune.ui import charts, i18n

BAR_HEIGHT, LABEL_WIDTH, CHART_WIDTH = 22, 150, 560
CELL = 44  # px: one cell of the confusion matrix


def class_balance(classes: list[dict[str, Any]], sampled: int | None, lang: str) -> str:
    """One bar per label with its count and share; the rarest class flagged when it is under a tenth."""
    if not classes:
        return ""
    total = sum(c["count"] for c in classes) or 1
    top = max(c["count"] for c in classes) or 1
    height = BAR_HEIGHT * len(classes) + 8
    rows = []
    for i, c in enumerate(classes):
        y, width = 4 + i * BAR_HEIGHT, (CHART_WIDTH - LABEL_WIDTH - 90) * c["count"] / top
        share = 100 * c["count"] / total
        rows.append(
            f"<text class='tb-tick' x='{LABEL_WIDTH - 6}' y='{y + 15}' text-anchor='end'>"
            f"{charts.esc(c['label'])}</text><rect class='tb-bar' x='{LABEL_WIDTH}' y='{y + 3}' "
            f"width='{max(width, 1):.1f}' height='{BAR_HEIGHT - 6}'><title>{charts.esc(c['label'])}: "
            f"{c['count']}</title></rect><text class='tb-tick' x='{LABEL_WIDTH + width + 6:.1f}' "
            f"y='{y + 15}'>{c['count']} ({share:.0f}%)</text>"
        )
    head = i18n.t(lang, "after.balance", n=len(classes), records=total)
    if sampled:
        head += " " + i18n.t(lang, "after.sampled", n=sampled)
    rare = min(classes, key=lambda c: c["count"])
    warn = ""
    if rare["count"] / total < 0.1 and len(classes) > 1:
        warn = charts.notes(
            [i18n.t(lang, "after.rare", label=rare["label"], pct=f"{100 * rare['count'] / total:.0f}")]
        )
    svg = (
        f"<svg viewBox='0 0 {CHART_WIDTH} {height}' role='img' aria-label='{charts.esc(head)}'>"
        f"{''.join(rows)}</svg>"
    )
    return f"<div class='tb-hist' id='tb-class-balance'><b>{charts.esc(head)}</b>{svg}{warn}</div>"


def confusion(labels: list[str], matrix: list[list[int]], lang: str) -> str:
    """Rows: the true label; columns: the predicted one; darker for more records, the count in each cell."""
    n = len(labels)
    top = max((max(row) for row in matrix), default=0) or 1
    left, head = LABEL_WIDTH, 70
    cells = []
    for i, row in enumerate(matrix):
        y = head + i * CELL
        cells.append(
            f"<text class='tb-tick' x='{left - 6}' y='{y + CELL / 2 + 4}' text-anchor='end'>"
            f"{charts.esc(labels[i])}</text>"
        )
        for j, count in enumerate(row):
            x, alpha = left + j * CELL, 0.08 + 0.92 * count / top
            ink = "#fff" if count > top / 2 else "currentColor"
            cells.append(
                f"<rect x='{x}' y='{y}' width='{CELL - 2}' height='{CELL - 2}' fill='#2563eb' "
                f"fill-opacity='{alpha:.2f}'><title>{charts.esc(labels[i])} → {charts.esc(labels[j])}: "
                f"{count}</title></rect><text x='{x + CELL / 2 - 1}' y='{y + CELL / 2 + 4}' "
                "text-anchor='middle' "
                f"fill='{ink}' class='tb-cm-count'>{count}</text>"
            )
    for j, name in enumerate(labels):
        x = left + j * CELL + CELL / 2
        cells.append(
            f"<text class='tb-tick' x='{x}' y='{head - 8}' text-anchor='start' "
            f"transform='rotate(-40 {x} {head - 8})'>{charts.esc(name)}</text>"
        )
    width, height = left + n * CELL + 10, head + n * CELL + 24
    axes = (
        f"<text class='tb-tick' x='{left + n * CELL / 2}' y='{height - 4}' text-anchor='middle'>"
        f"{charts.esc(i18n.t(lang, 'after.predicted'))}</text>"
    )
    label = charts.esc(i18n.t(lang, "after.confusion"))
    svg = (
        f"<svg viewBox='0 0 {width} {height}' width='{width}' role='img' aria-label='{label}'>"
        f"{''.join(cells)}{axes}</svg>"
    )
    rows_true = charts.esc(i18n.t(lang, "after.rows_true"))
    return f"<div class='tb-confusion' id='tb-confusion'><b>{label}</b> <span>({rows_true})</span>{svg}</div>"


def result_html(result: dict[str, Any], lang: str) -> str:
    """An eval.json on the page: its figures, where they come from, and a few records."""
    note = ""
    if result.get("records_from") == "training":
        note = charts.notes([i18n.t(lang, "after.from_training")])
    where = i18n.t(lang, "after.where", n=result["records"], weights=result["weights"],
                   source=i18n.t(lang, f"after.source_{result['records_from']}"))  # fmt: skip
    if result["task"] == "classification":
        body = _classification(result, lang)
    else:
        body = _language_model(result, lang)
    return f"<div class='tb-eval' id='tb-eval-result'><p>{charts.esc(where)}</p>{note}{body}</div>"


def _language_model(result: dict[str, Any], lang: str) -> str:
    base, tuned = result.get("base") or {}, result["tuned"]
    rows = ""
    for key in ("loss", "perplexity", "token_accuracy"):
        if key in tuned:
            b = f"{base[key]:.4g}" if key in base else "–"
            name = charts.esc(i18n.t(lang, f"after.{key}"))
            rows += f"<tr><th>{name}</th><td>{b}</td><td>{tuned[key]:.4g}</td></tr>"
    heads = "".join(
        f"<th>{charts.esc(i18n.t(lang, k))}</th>" for k in ("after.figure", "after.base", "after.tuned")
    )
    table = f"<table class='tb-eval-table'><tr>{heads}</tr>{rows}</table>"
    return table + _samples(result.get("samples") or [], ("reference", "base", "tuned"), lang)


def _classification(result: dict[str, Any], lang: str) -> str:
    line = i18n.t(lang, "after.scores", accuracy=f"{result['accuracy']:.3f}", f1=f"{result['macro_f1']:.3f}")
    heads = "".join(
        f"<th>{charts.esc(i18n.t(lang, f'after.{k}'))}</th>"
        for k in ("label", "precision", "recall", "f1", "support")
    )
    rows = "".join(
        f"<tr><td>{charts.esc(c['label'])}</td><td>{c['precision']:.3f}</td><td>{c['recall']:.3f}</td>"
        f"<td>{c['f1']:.3f}</td><td>{c['support']}</td></tr>"
        for c in result["per_class"]
    )
    table = f"<table class='tb-eval-table'><tr>{heads}</tr>{rows}</table>"
    matrix = confusion(result["labels"], result["confusion"], lang)
    shown = [s | {"probability": f"{s['probability']:.0%}"} if "probability" in s else s
             for s in result.get("samples") or []]  # fmt: skip
    samples = _samples(shown, ("true", "predicted", "probability"), lang, first="text")
    return f"<p class='tb-scores'><b>{charts.esc(line)}</b></p>{matrix}{table}{samples}"


def _samples(rows: list[dict[str, Any]], keys: tuple[str, ...], lang: str, first: str = "prompt") -> str:
    if not rows:
        return ""
    heads = "".join(f"<th>{charts.esc(i18n.t(lang, f'after.col_{k}'))}</th>" for k in (first, *keys))
    body = "".join(
        "<tr>" + "".join(f"<td>{charts.esc(r.get(k, '–'))}</td>" for k in (first, *keys)) + "</tr>"
        for r in rows
    )
    return f"<table class='tb-eval-table tb-samples'><tr>{heads}</tr>{body}</table>"


def headline(result: dict[str, Any] | None) -> str:
    """One cell of the Runs table: the figures to compare across runs."""
    if not result:
        return "–"
    mark = " *" if result.get("records_from") == "training" else ""  # * : measured on training records
    if result["task"] == "classification":
        return f"acc {result['accuracy']:.3f} · F1 {result['macro_f1']:.3f}{mark}"
    tuned, base = result["tuned"], result.get("base")
    text = f"loss {tuned['loss']:.3f}"
    return text + (f" (base {base['loss']:.3f})" if base else "") + mark
