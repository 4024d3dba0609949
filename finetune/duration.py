"""How long will a run take? Estimated before Start, from a speed measured on this machine.

    python -m finetune plan CONFIG.yaml         # "== Duration"
    python -m finetune calibrate CONFIG.yaml    # a few real steps on the real data, not kept as a run

Every finished run, and every calibration, records its speed in CACHE/speed/<key>.json: non-padding tokens
per second (TRL's num_tokens over time, the first logging interval left out as warm-up) and the seconds from
the process's start to its first training step. The key is what sets that speed: the model, method, LoRA
rank, task, device, batch size, max_length, precision and checkpointing (the values the run really uses).
The estimate is then the tokens the run will see (micro-batches x batch x the mean record length, cut at
max_length) over that speed, plus the start-up time, given as a range.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from finetune import builtin, procs
from finetune import status as st
from finetune.errors import JobError

FOLDER = "speed"
SPREAD = 0.2  # the range around the estimate: step times vary with the records' lengths and the machine


def key(config: Any, args: Any, device: Any) -> str:
    """The speed record's name: a hash of what sets a run's speed on this machine."""
    parts = {
        "model": [config.model.name_or_path, config.model.revision, config.model.dtype],
        "method": [config.method, config.lora.r if config.method != "full" else None],
        "task": config.task,
        "device": [device.kind, device.name, config.launch.num_processes],
        "batch": args.per_device_train_batch_size,
        "max_length": config.dataset.max_length,
        "precision": [bool(args.bf16), bool(args.fp16)],
        "checkpointing": bool(args.gradient_checkpointing),
        "packing": bool(getattr(args, "packing", False)),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def record(name: str, *, tokens_per_second: float, first_step_s: float, source: str) -> None:
    """Keep a measured speed for the next estimate (a newer one replaces an older)."""
    folder = builtin.cache_root() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    row = {
        "tokens_per_second": round(tokens_per_second, 1),
        "first_step_s": round(first_step_s, 1),
        "source": source,
        "at": st.now_iso(),
    }
    st.write_text_atomic(folder / f"{name}.json", json.dumps(row) + "\n")


def measured(name: str) -> dict[str, Any] | None:
    path = builtin.cache_root() / FOLDER / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


MIN_RATES = 4  # logged intervals after the warm-up a speed needs: fewer, and one checkpoint save skews it


def speed_of(metrics: list[dict[str, Any]]) -> float | None:
    """Tokens per second of a run from its metrics.jsonl rows: the median over its logging intervals, the
    first (warm-up) left out; None for a run too short to tell (a 6-step trial whose intervals hold a
    checkpoint save measured a fifth of the demo's real speed, and the next estimate was 4x too long)."""
    rates = [row["tokens_per_second"] for row in metrics if row.get("tokens_per_second")][1:]
    return statistics.median(rates) if len(rates) >= MIN_RATES else None


def estimate(name: str, steps: Any, mean_tokens: float) -> dict[str, Any] | None:
    """The run's duration as a range in seconds, from the speed recorded under ``name``; None when no run
    or calibration has measured it yet. ``mean_tokens``: a record's mean length, cut at max_length (the
    length statistics' ``mean_cut``)."""
    found = measured(name)
    if not found or not found.get("tokens_per_second") or not steps.micro_batches:
        return None
    tokens = steps.micro_batches * steps.batch_size * steps.devices * mean_tokens
    training = tokens / found["tokens_per_second"]
    start = found.get("first_step_s") or 0.0
    return {
        "tokens": round(tokens),
        "seconds": round(start + training, 1),
        "low": round(start + training * (1 - SPREAD), 1),
        "high": round(start + training * (1 + SPREAD), 1),
        "tokens_per_second": found["tokens_per_second"],
        "source": found.get("source"),
    }


CALIBRATION_STEPS = 10


def calibrate(config: Any, steps: int = CALIBRATION_STEPS) -> str:
    """Train ``steps`` real steps of ``config`` on its data in a throw-away run directory (a child process,
    never listed as a run); the training process records the speed as a run's end does. Returns the line
    it printed about that speed ("" when it measured none)."""
    with tempfile.TemporaryDirectory(prefix="tuneboard-calibrate-") as tmp:
        (Path(tmp) / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
        overrides = {
            "training.max_steps": steps,
            "training.logging_steps": max(steps // (MIN_RATES * 2), 1),  # enough intervals to measure
            "training.save_strategy": "no",
            "training.report_to": "none",
            "after.stop_check": "false",
        }
        argv = [sys.executable, "-m", "finetune", "train", str(Path(tmp) / "config.yaml")]
        argv += ["--run-dir", str(Path(tmp) / "run")]
        argv += [part for name, value in overrides.items() for part in (f"--{name}", str(value))]
        env = os.environ | {"TUNEBOARD_SPEED_SOURCE": "calibration"}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise JobError(f"the calibration run failed: {tail[0]}")
        said = [line for line in done.stdout.splitlines() if line.startswith("speed:")]
    return said[-1] if said else ""


def human(seconds: float, units: dict[str, str] | None = None) -> str:
    """90 -> '1 min 30 s', 4000 -> '1 h 6 min': seconds only under ten minutes. ``units``: the words for
    h / min / s in the page's language."""
    words = units or {"h": "h", "min": "min", "s": "s"}
    hours, rest = divmod(max(round(seconds), 1), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "min")] if hours else [(minutes, "min"), (secs, "s")]
    if not hours and minutes >= 10:
        parts = [(minutes, "min")]
    return " ".join(f"{n} {words[unit]}" for n, unit in parts if n)


def process_started() -> float:
    """time.monotonic() when this process started (Python's own start-up and imports included)."""
    return time.monotonic() - (procs.age(os.getpid()) or 0.0)
