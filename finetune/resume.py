"""Continue a run where it stopped: find its newest complete checkpoint and rewind its curves to it.

    python -m finetune train RUN_DIR/config.yaml --resume      # or Resume in the dashboard

A checkpoint folder is complete once trainer_state.json exists: the Trainer writes it last, after the
weights, optimizer, scheduler and RNG states, so a folder cut short by a kill is never resumed from.
Steps logged after that checkpoint are trained again, so metrics.jsonl drops its rows past the checkpoint
and TensorBoard gets a purge marker at that step: the resumed curve continues the old one instead of
drawing a second line over the same steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune import status as st


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder of a run, or None."""
    done = [
        p
        for p in Path(run_dir).glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def checkpoint_step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def rewind(run_dir: Path, step: int) -> None:
    """Forget what was logged after ``step`` (0 = everything): metrics.jsonl rows and TensorBoard points."""
    _rewind_metrics(run_dir / "metrics.jsonl", step)
    tensorboard = run_dir / "tensorboard"
    if tensorboard.is_dir():
        from torch.utils.tensorboard import SummaryWriter

        # purge_step writes a SessionLog START: TensorBoard drops the older events from that step on.
        SummaryWriter(str(tensorboard), purge_step=step + 1).close()


def _rewind_metrics(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(row, dict) and int(row.get("step", 0)) <= step:
            kept.append(line)
    st.write_text_atomic(path, "".join(f"{line}\n" for line in kept))


def attempt_fields(previous: dict[str, Any], start_step: int) -> dict[str, Any]:
    """status.json fields for a new attempt: its number, its start, and the training time before it."""
    prior = float(previous.get("prior_seconds") or 0.0)
    began, ended = st.parse_time(previous.get("attempt_started_at")), st.parse_time(previous.get("ended_at"))
    if began and ended and ended > began:
        prior += (ended - began).total_seconds()
    now = st.now_iso()
    return {
        "attempt": int(previous.get("attempt") or 0) + 1,
        "started_at": previous.get("started_at") or now,
        "attempt_started_at": now,
        "attempt_start_step": start_step,
        "prior_seconds": round(prior, 1),
        "ended_at": None,
        "reason": None,
        "log_tail": None,
    }
