"""Following a run from the page: attach once, then read only what is new (no browser, no training).

.venv/bin/pytest tests/ui/test_run_tab.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from finetune import procs, runs
from finetune.ui import run_tab


def make_run(root: Path, name: str, state: str, started: str, **status) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": state, "started_at": started, **status}))
    (run_dir / "config.yaml").write_text("task: sft\n")
    return run_dir


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_attach_then_poll_reads_only_new_lines(tmp_path: Path) -> None:
    me = {"pid": os.getpid(), "pid_start_time": procs.start_time(os.getpid())}
    run_dir = make_run(tmp_path, "r1", "running", "2025-01-01T00:00:00+00:00", step=2, max_steps=10, **me)
    append(run_dir / "metrics.jsonl", json.dumps({"step": 2, "loss": 3.0}))
    append(run_dir / "train.log", "loading", "step 2/10 loss 3.0")
    follow = run_tab.attach(tmp_path, "r1")
    assert [r["step"] for r in follow["rows"]] == [2] and follow["log"][-1] == "step 2/10 loss 3.0"
    assert follow["status"]["state"] == "running"

    follow, new_rows, new_log = run_tab.poll(tmp_path, follow)
    assert not new_rows and not new_log  # nothing written since

    append(run_dir / "metrics.jsonl", json.dumps({"step": 4, "loss": 2.5}))
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 6, "lo')  # a line still being written waits for the next tick
    append(run_dir / "train.log", "step 4/10 loss 2.5")
    follow, new_rows, new_log = run_tab.poll(tmp_path, follow)
    assert new_rows and new_log and [r["step"] for r in follow["rows"]] == [2, 4]
    assert follow["met_off"] < (run_dir / "metrics.jsonl").stat().st_size

    frame = run_tab.charts.metric_frame(follow["rows"], run_tab.PLOTS["loss_plot"])
    assert list(frame["step"]) == [2, 4] and set(frame["series"]) == {"loss"}


def test_latest_run_prefers_a_live_one(tmp_path: Path) -> None:
    me = {"pid": os.getpid(), "pid_start_time": procs.start_time(os.getpid())}
    make_run(tmp_path, "old-live", "running", "2025-01-01T00:00:00+00:00", **me)
    make_run(tmp_path, "new-done", "finished", "2025-01-02T00:00:00+00:00")
    assert run_tab.latest_run(tmp_path) == "old-live"
    dead = make_run(tmp_path, "newest-dead", "running", "2025-01-03T00:00:00+00:00", pid=2**22 + 7)
    assert run_tab.latest_run(tmp_path) == "old-live"  # the dead one was reconciled to failed on the way
    assert json.loads((dead / "status.json").read_text())["state"] == "failed"
    assert run_tab.latest_run(tmp_path / "none") is None
    assert run_tab.attach(tmp_path, None) == {}


TOKEN = "hf_" + "AbCd1234" * 4 + "xy"


def test_the_page_shows_logs_redacted(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({"state": "finished"}))
    (run_dir / "train.log").write_text(f"first {TOKEN}\n", encoding="utf-8")
    follow = run_tab.attach(tmp_path, "r")
    assert follow["log"] == ["first hf_***"]
    with (run_dir / "train.log").open("a", encoding="utf-8") as fh:
        fh.write(f"second {TOKEN}\n")
    follow, _, new_log = run_tab.poll(tmp_path, follow)
    assert new_log and follow["log"][-1] == "second hf_***"
    assert runs.log_tail(run_dir)[0] == ["first hf_***", "second hf_***"]
