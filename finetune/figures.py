"""Pictures that leave the page: the confusion matrix of a classification run and a run's loss curve, as PNG
files (eval-confusion.png in the run directory; loss.png in an export, which its model card shows).

    (used by finetune/evaluate.py and finetune/export.py; tests/test_evaluate.py, tests/test_export.py)

matplotlib draws them off-screen (the Agg backend: no display needed, as on a server or in a container).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: a server has no display
    import matplotlib.pyplot as plt

    return plt


def confusion_png(labels: list[str], matrix: list[list[int]], out: Path) -> Path:
    """Rows: true label, columns: predicted; each cell its count, darker for more."""
    plt = _pyplot()
    size = max(3.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(row) for row in matrix), default=0) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    fig.tight_layout()
    return _save(fig, plt, out)


def loss_png(curves: dict[str, list[tuple[int, float]]], out: Path) -> Path:
    """One line per series (training loss, validation loss) against the optimizer step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, points in curves.items():
        if points:
            marker = "." if len(points) < 30 else None
            ax.plot([s for s, _ in points], [v for _, v in points], label=name, marker=marker)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, plt, out)


def _save(fig: Any, plt: Any, out: Path) -> Path:
    """Written beside its place, then moved in: a reader never sees half a picture."""
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, format="png")
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
