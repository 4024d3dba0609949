"""finetune/resume.py: which checkpoint a run continues from, and how its curves are rewound to it.

    .venv/bin/pytest tests/test_resume.py -q

The end-to-end resume (kill -9, Resume, the step count continuing in metrics and TensorBoard) is in
tests/test_scheduler.py; these are the rules it stands on.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune import resume


def checkpoint(run_dir: Path, step: int, complete: bool = True) -> Path:
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:  # the Trainer writes trainer_state.json last
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_only_a_complete_checkpoint_is_resumed_from(tmp_path: Path) -> None:
    assert resume.last_checkpoint(tmp_path) is None
    checkpoint(tmp_path, 5)
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 15, complete=False)  # cut short by a kill while saving
    (tmp_path / "checkpoint-notanumber").mkdir()
    assert resume.last_checkpoint(tmp_path).name == "checkpoint-10"  # numeric order, the newest complete
    assert resume.checkpoint_step(resume.last_checkpoint(tmp_path)) == 10
    assert resume.checkpoint_step(None) == 0


def test_rewind_drops_rows_after_the_checkpoint_and_cut_lines(tmp_path: Path) -> None:
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 8)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 8, "lo'  # killed mid-write
    (tmp_path / "metrics.jsonl").write_text(text)
    resume.rewind(tmp_path, 5)
    kept = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert kept == [1, 2, 3, 4, 5]
    resume.rewind(tmp_path, 0)  # no checkpoint: training starts over, so do the curves
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_attempts_count_and_training_time_adds_up() -> None:
    first = resume.attempt_fields({}, 0)
    assert first["attempt"] == 1 and first["prior_seconds"] == 0 and first["attempt_start_step"] == 0
    ended = first | {
        "attempt_started_at": "2026-01-01T10:00:00+00:00",
        "ended_at": "2026-01-01T10:02:30+00:00",
        "started_at": "2026-01-01T10:00:00+00:00",
    }
    second = resume.attempt_fields(ended, 40)
    assert second["attempt"] == 2 and second["prior_seconds"] == 150.0
    assert second["started_at"] == "2026-01-01T10:00:00+00:00"  # the run's first start is kept
    assert second["attempt_start_step"] == 40 and second["ended_at"] is None
