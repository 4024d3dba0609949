"""What bench/run.py reads back from a finished variant: throughput, padding, memory, losses.

    (imported by bench/run.py and bench/gpu.py; nothing to run on its own)

Every figure comes from files the run left, the same way for each variant:
- the trainer's own log (Tuneboard: RUN_DIR/metrics.jsonl, written by finetune/callbacks.py; plain TRL:
  OUTPUT_DIR/trainer_state.json's log_history): ``num_tokens`` (TRL's running count of non-padding tokens,
  at each log), ``loss`` and, in the last row, ``train_runtime``. Tokens per second = the last num_tokens over
  train_runtime; seconds per optimizer step = train_runtime over the steps.
- bench_batches.json, written in the training process by bench/hook/sitecustomize.py: the token slots and
  real tokens of every micro-batch (padding fraction = 1 - real / slots), the time of the first step, and the
  peak memory when ``Trainer.train`` returned (VmHWM on a CPU, torch.cuda.max_memory_allocated on a GPU).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

COUNTS_FILE = "bench_batches.json"


def log_rows(out: Path) -> list[dict[str, Any]]:
    """The trainer's log rows: metrics.jsonl (Tuneboard) or trainer_state.json's log_history (plain TRL)."""
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        lines = metrics.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    return state["log_history"]


def counts(out: Path) -> dict[str, Any]:
    return json.loads((out / COUNTS_FILE).read_text(encoding="utf-8"))


def result(out: Path, started_at: float, **extra: Any) -> dict[str, Any]:
    """One finished run's figures; ``started_at``: time.time() when it was launched (or Start clicked)."""
    rows, seen = log_rows(out), counts(out)
    end = next(r for r in reversed(rows) if "train_runtime" in r)
    tokens = max(float(r["num_tokens"]) for r in rows if "num_tokens" in r)
    steps = int(end.get("step") or max(int(r.get("step", 0)) for r in rows))
    cuda = seen.get("cuda_peak_bytes")
    return {
        "tokens_per_s": tokens / end["train_runtime"],
        "s_per_step": end["train_runtime"] / steps,
        "padding": 1 - seen["real_tokens"] / seen["slots"],
        "peak_mb": cuda / 2**20 if cuda else seen["peak_rss_kb"] / 1024,
        "rss_at_first_step_mb": seen.get("rss_at_first_step_kb", 0) / 1024,
        "first_step_s": seen["first_step_at"] - started_at,
        "tokens": tokens,
        "hook_tokens": seen["real_tokens"],
        "train_runtime": end["train_runtime"],
        "steps": steps,
        "losses": [
            [float(r["num_tokens"]), float(r["loss"])] for r in rows if "loss" in r and "num_tokens" in r
        ],
        **extra,
    }


def loss_at(points: list[list[float]], tokens: float) -> float | None:
    """The logged loss at ``tokens`` tokens seen, interpolated linearly between the two logs around it."""
    if not points:
        return None
    points = sorted(points)
    if tokens <= points[0][0]:
        return points[0][1]
    for (t0, l0), (t1, l1) in zip(points, points[1:], strict=False):
        if t0 <= tokens <= t1:
            return l0 + (l1 - l0) * (tokens - t0) / (t1 - t0) if t1 > t0 else l1
    return points[-1][1]


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return a / b if a is not None and b else None


def add_equal_token_losses(results: dict[str, list[dict[str, Any]]]) -> float:
    """Give every run ``loss_at_equal``: its loss at the fewest tokens any run reached; returns that count."""
    every = [run for runs in results.values() for run in runs]
    common = min(run["tokens"] for run in every)
    for run in every:
        run["loss_at_equal"] = loss_at(run["losses"], common)
    return common
