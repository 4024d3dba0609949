"""Trainer callbacks that make a run directory tell everything: status.json, metrics.jsonl, clean stops.

    (used by finetune.train; nothing to run on its own)

A plain Trainer killed by SIGTERM saves nothing. :class:`StopOnSignal` turns SIGTERM/SIGINT into "finish this
step, save a checkpoint, stop", so Stop in the dashboard and Ctrl-C on the CLI both leave a resumable run.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from finetune import status as st


class RunRecorder(TrainerCallback):
    """Append one JSON line per log to metrics.jsonl and keep status.json's progress current."""

    def __init__(self, run_dir: Path, prior_seconds: float = 0.0):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.start = time.monotonic() - prior_seconds  # elapsed continues across resumed attempts
        self.last_tokens: tuple[float, float] | None = None  # (time, num_tokens) at the previous log
        self.diverged_at: int | None = None  # step where the loss became NaN/inf
        self.first_logged_step: int | None = None
        self.first_step_at: float | None = None  # time.monotonic() when the first training step began

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # in a multi-process run, rank 0 speaks for all
            st.update(self.run_dir, step=state.global_step, max_steps=state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        elapsed = time.monotonic() - self.start
        row = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        row |= {
            "step": state.global_step,
            "epoch": round(state.epoch or 0.0, 4),
            "elapsed": round(elapsed, 2),
        }
        row |= self._throughput(logs, elapsed)
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        if "loss" in logs:
            print(
                f"step {state.global_step}/{state.max_steps} epoch {row['epoch']:.2f} "
                f"loss {logs['loss']:.4f} "
                f"lr {logs.get('learning_rate', 0):.2e}",
                flush=True,
            )
        st.update(
            self.run_dir,
            step=state.global_step,
            max_steps=state.max_steps,
            epoch=row["epoch"],
            **({"loss": logs["loss"]} if "loss" in logs else {}),  # the final summary log has no loss
        )
        loss = logs.get("loss")
        if "loss" in logs and self.first_logged_step is None:
            self.first_logged_step = state.global_step
        if isinstance(loss, float) and not math.isfinite(loss):
            # Training on after a NaN only burns GPU time: every later step is NaN too.
            self.diverged_at = state.global_step
            control.should_training_stop = True
        return control

    def _throughput(self, logs: dict[str, Any], elapsed: float) -> dict[str, float]:
        # TRL logs the running total of tokens seen as num_tokens; the rate is its change between logs.
        if "num_tokens" not in logs:
            return {}
        current = (elapsed, float(logs["num_tokens"]))
        previous, self.last_tokens = self.last_tokens, current
        if previous is None or current[0] <= previous[0]:
            return {}
        return {"tokens_per_second": round((current[1] - previous[1]) / (current[0] - previous[0]), 1)}


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGINT -> save a checkpoint at the end of the current step and stop training."""

    ECHO_SECONDS = 5.0  # a second signal this soon is the same request passed on again, not insistence

    def __init__(self) -> None:
        self.requested = False
        self.asked_at = 0.0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request)

    def _request(self, signum, frame) -> None:
        # Under `accelerate launch` each rank gets Stop's SIGTERM twice: from the process group, and from the
        # launcher passing it on. Only a later second signal means "stop now, without a checkpoint".
        if self.requested and time.monotonic() - self.asked_at > self.ECHO_SECONDS:
            raise KeyboardInterrupt
        if self.requested:
            return
        self.requested, self.asked_at = True, time.monotonic()
        print(
            f"received {signal.Signals(signum).name}: stopping after this step with a checkpoint", flush=True
        )

    def on_step_end(self, args, state, control, **kwargs):
        if _any_rank(self.requested, args):
            self.requested = True  # asked of another rank: this one stops (and says so) too
            control.should_save = True
            control.should_training_stop = True
        return control


def _any_rank(flag: bool, args: Any) -> bool:
    """``flag`` on any process of a multi-process run. Stop reaches every rank, but not at the same instant:
    a rank that stopped a step before the others would leave them waiting for it in the next all-reduce."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    import torch

    value = torch.tensor([int(flag)], device=args.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
