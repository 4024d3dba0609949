"""Tests for finetune/runs.py: listing run directories and following their files by byte offset.

.venv/bin/pytest tests/test_runs.py -q
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from finetune import jobs, procs, runs, scheduler


def make_run(root: Path, name: str, status: dict, metrics: list[dict] | None = None, log: str = "") -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    (run_dir / "config.yaml").write_text("task: sft\n", encoding="utf-8")
    if metrics is not None:
        (run_dir / "metrics.jsonl").write_text(
            "".join(json.dumps(m) + "\n" for m in metrics), encoding="utf-8"
        )
    (run_dir / "train.log").write_text(log, encoding="utf-8")
    return run_dir


def test_read_new_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    assert runs.read_new(path, 0) == ([], 0)  # not there yet
    path.write_bytes(b"one\ntwo\nthr")
    lines, offset = runs.read_new(path, 0)
    assert lines == ["one", "two"] and offset == 8
    assert runs.read_new(path, offset) == ([], 8)  # the half-written line waits
    with path.open("ab") as fh:
        fh.write("ee\n四\n".encode())
    lines, offset = runs.read_new(path, offset)
    assert lines == ["three", "四"] and offset == path.stat().st_size


def test_read_new_reads_each_byte_once(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("x" * 1000 + "\n", encoding="utf-8")
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def read(self, n=-1):
            data = self.fh.read(n)
            sizes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr("builtins.open", lambda *a, **k: Spy(real_open(*a, **k)))
    _, offset = runs.read_new(path, 0)
    with real_open(path, "a") as fh:
        fh.write("y\n")
    lines, _ = runs.read_new(path, offset)
    assert lines == ["y"]
    assert sizes == [1001, 2]


def test_read_new_restarts_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("a\nb\nc\n")
    _, offset = runs.read_new(path, 0)
    path.write_text("z\n")
    assert runs.read_new(path, offset) == (["z"], 2)


def test_read_new_respects_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("".join(f"{i}\n" for i in range(100)))
    got, offset = [], 0
    while True:
        lines, new = runs.read_new(path, offset, limit=25)
        if new == offset:
            break
        got, offset = got + lines, new
    assert got == [str(i) for i in range(100)]


def test_tail_offset_starts_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    offset = runs.tail_offset(path, 100)
    lines, end = runs.read_new(path, offset)
    assert lines[-1] == "line 999" and all(line.startswith("line ") for line in lines)
    assert end == path.stat().st_size and len(lines) < 20


def test_list_runs_newest_first_with_final_loss(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    make_run(
        root,
        "a",
        {
            "state": "finished",
            "started_at": t0.isoformat(),
            "ended_at": (t0 + timedelta(seconds=90)).isoformat(),
            "step": 10,
            "max_steps": 10,
            "loss": None,
        },
        metrics=[{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.5}, {"step": 10, "train_loss": 1.8}],
    )
    make_run(
        root,
        "b",
        {
            "state": "running",
            "started_at": (t0 + timedelta(hours=1)).isoformat(),
            "step": 3,
            "max_steps": 6,
            "loss": 3.25,
        },
    )
    (root / ".c.123.tmp").mkdir()  # a run being created: not listed
    listed = runs.list_runs(root)
    assert [r.id for r in listed] == ["b", "a"]
    assert listed[1].final_loss == 1.5 and listed[1].duration == 90 and listed[1].state == "finished"
    assert listed[0].final_loss == 3.25 and listed[0].step == 3
    assert runs.list_runs(tmp_path / "nothing") == []


def test_progress_eta() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    status = {"state": "running", "started_at": start.isoformat(), "step": 25, "max_steps": 100}
    prog = runs.progress(status, now=start + timedelta(seconds=50))
    assert prog["fraction"] == 0.25 and prog["elapsed"] == 50 and prog["eta"] == 150
    assert runs.progress({**status, "state": "stopped"}, now=start + timedelta(seconds=50))["eta"] is None


def test_metrics_series_and_compare(tmp_path: Path) -> None:
    rows = [
        {"step": 2, "loss": 3.0, "learning_rate": 1e-3},
        {"step": 4, "loss": 2.0},
        {"step": 4, "eval_loss": 2.5},
    ]
    a = make_run(tmp_path, "a", {"state": "finished"}, metrics=rows)
    b = make_run(tmp_path, "b", {"state": "finished"}, metrics=rows[:1])
    with (a / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 6, "loss"')  # interrupted write: ignored
    assert runs.series(runs.read_metrics(a), "loss") == [(2, 3.0), (4, 2.0)]
    assert runs.series(runs.read_metrics(a), "eval_loss") == [(4, 2.5)]
    assert runs.compare([a, b]) == [
        {"run": "a", "step": 2, "value": 3.0},
        {"run": "a", "step": 4, "value": 2.0},
        {"run": "b", "step": 2, "value": 3.0},
    ]


def test_log_tail(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "r", {}, log="".join(f"{i}\n" for i in range(500)))
    lines, offset = runs.log_tail(run_dir, lines=3)
    assert lines == ["497", "498", "499"] and offset == (run_dir / "train.log").stat().st_size


def test_the_eta_follows_the_recent_pace_not_the_first_steps() -> None:
    # Issue 8: a run that slowed down from 0.5 s to 4 s a step. The average since the start says 2:30 left;
    # the last ten logged steps say 60 steps x 4 s = 4:00, counted down since the last of them.
    start = datetime(2025, 1, 1, tzinfo=UTC)
    elapsed, rows = 5.0, []
    for step in range(2, 42, 2):
        elapsed += 2 * (0.5 if step <= 20 else 4.0)
        rows.append({"step": step, "loss": 1.0, "elapsed": elapsed})
    rows.append({"step": 40, "eval_loss": 1.0, "elapsed": elapsed})  # an eval row at the same step
    last = start + timedelta(seconds=100)
    status = {"state": "running", "started_at": start.isoformat(), "step": 40, "max_steps": 100,
              "updated_at": last.isoformat()}  # fmt: skip
    assert runs.recent_pace(rows) == pytest.approx(4.0)
    assert runs.progress(status, now=last, rows=rows)["eta"] == pytest.approx(240)
    assert runs.progress(status, now=last + timedelta(seconds=30), rows=rows)["eta"] == pytest.approx(210)
    assert runs.progress(status, now=last, rows=[])["eta"] == pytest.approx(150)  # no pace yet: since start
    resumed = {**status, "attempt_start_step": 38}  # only steps of this attempt count
    assert runs.recent_pace(rows, 38) is None
    assert runs.progress(resumed, now=last, rows=rows)["eta"] == pytest.approx(100 / 2 * 60)


# ---------------------------------------------------------------- following one run (the page's Run section)


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


def alive() -> dict:
    """Status fields naming this test's own process: a live run's process, as reconcile sees it."""
    return {"pid": os.getpid(), "pid_start_time": procs.start_time(os.getpid())}


def test_attach_then_poll_reads_only_new_lines(tmp_path: Path) -> None:
    status = {"state": "running", "started_at": "2025-01-01T00:00:00+00:00", "step": 2, "max_steps": 10}
    run_dir = make_run(
        tmp_path, "r1", status | alive(), [{"step": 2, "loss": 3.0}], "loading\nstep 2/10 loss 3.0\n"
    )
    follow = runs.attach(tmp_path, "r1", status_of=jobs.reconcile)
    assert [r["step"] for r in follow["rows"]] == [2] and follow["log"][-1] == "step 2/10 loss 3.0"
    assert follow["status"]["state"] == "running"

    follow, new_rows, new_log = runs.poll(tmp_path, follow, status_of=jobs.reconcile)
    assert not new_rows and not new_log  # nothing written since

    append(run_dir / "metrics.jsonl", json.dumps({"step": 4, "loss": 2.5}))
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 6, "lo')  # a line still being written waits for the next tick
    append(run_dir / "train.log", "step 4/10 loss 2.5")
    follow, new_rows, new_log = runs.poll(tmp_path, follow, status_of=jobs.reconcile)
    assert new_rows and new_log and [r["step"] for r in follow["rows"]] == [2, 4]
    assert follow["met_off"] < (run_dir / "metrics.jsonl").stat().st_size


def test_latest_run_prefers_a_live_one(tmp_path: Path) -> None:
    make_run(tmp_path, "old-live", {"state": "running", "started_at": "2025-01-01T00:00:00+00:00"} | alive())
    make_run(tmp_path, "new-done", {"state": "finished", "started_at": "2025-01-02T00:00:00+00:00"})
    assert runs.latest_run(tmp_path, scheduler.queue, status_of=jobs.reconcile) == "old-live"
    dead_status = {"state": "running", "started_at": "2025-01-03T00:00:00+00:00", "pid": 2**22 + 7}
    dead = make_run(tmp_path, "newest-dead", dead_status)
    assert runs.latest_run(tmp_path, scheduler.queue, status_of=jobs.reconcile) == "old-live"
    assert json.loads((dead / "status.json").read_text())["state"] == "failed"  # reconciled on the way
    assert runs.latest_run(tmp_path / "none", scheduler.queue, status_of=jobs.reconcile) is None
    assert runs.attach(tmp_path, None) == {}


def test_following_with_the_default_reader_only_reads(tmp_path: Path) -> None:
    dead = make_run(
        tmp_path, "dead", {"state": "running", "started_at": "2025-01-03T00:00:00+00:00", "pid": 2**22 + 7}
    )
    assert runs.attach(tmp_path, "dead")["status"]["state"] == "running"  # as written: nothing reconciled
    assert runs.latest_run(tmp_path, lambda root: []) == "dead"
    assert json.loads((dead / "status.json").read_text())["state"] == "running"


TOKEN = "hf_" + "AbCd1234" * 4 + "xy"


def test_a_followed_log_is_redacted(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "r", {"state": "finished"}, log=f"first {TOKEN}\n")
    follow = runs.attach(tmp_path, "r", status_of=jobs.reconcile)
    assert follow["log"] == ["first hf_***"]
    with (run_dir / "train.log").open("a", encoding="utf-8") as fh:
        fh.write(f"second {TOKEN}\n")
    follow, _, new_log = runs.poll(tmp_path, follow, status_of=jobs.reconcile)
    assert new_log and follow["log"][-1] == "second hf_***"
    assert runs.log_tail(run_dir)[0] == ["first hf_***", "second hf_***"]
