"""Tests for finetune/jobs.py: real training subprocesses on the tiny model, started, stopped and reconciled.

.venv/bin/pytest tests/test_jobs.py -q
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finetune import config, jobs, runs
from finetune.preflight import PreflightError

ROOT = Path(__file__).resolve().parent.parent


def demo(**overrides) -> config.Config:
    return config.load(ROOT / "presets" / "demo.yaml", overrides)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def ended(run_dir: Path) -> dict | None:
    status = jobs.reconcile(run_dir)
    return None if runs.is_live(status) else status


def test_start_runs_to_the_end_in_its_own_process_group(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = jobs.start(demo(**{"training.max_steps": 6, "training.save_strategy": "no"}), tmp_path / "runs")
    status = runs.read_status(run_dir)
    pid = status["pid"]
    assert status["run_id"] == run_dir.name and status["pid_start_time"] == jobs.process_start_time(pid)
    assert status["argv"][1:4] == ["-m", "finetune", "train"] and "--run-dir" in status["argv"]
    if jobs.is_alive(status):
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session, own group
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/1") == str(run_dir / "train.log")
    final = wait_for(lambda: ended(run_dir))
    assert final["state"] == "finished", final
    wait_for(lambda: not jobs.is_alive(final), timeout=30)  # status is written just before the exit
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "step 6/6" in log and log.count("step 6/6") == 1  # redirected once, not also teed
    assert runs.series(runs.read_metrics(run_dir), "loss")
    assert (run_dir / "effective_config.yaml").is_file()
    assert config.load(run_dir / "config.yaml").training.max_steps == 6


def test_stop_is_graceful_and_keeps_a_checkpoint(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = jobs.start(demo(**{"training.num_train_epochs": 200}), tmp_path / "runs", check=False)
    wait_for(lambda: runs.read_status(run_dir).get("step", 0) >= 4)
    status = jobs.stop(run_dir, wait=90)
    assert status["state"] == "stopped", status
    assert status["checkpoint"] and (run_dir / status["checkpoint"] / "trainer_state.json").is_file()
    assert "received SIGTERM" in (run_dir / "train.log").read_text(encoding="utf-8")
    assert jobs.stop(run_dir)["state"] == "stopped"  # stopping a stopped run changes nothing


def test_a_killed_job_is_marked_failed(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = jobs.start(demo(**{"training.num_train_epochs": 200}), tmp_path / "runs", check=False)
    wait_for(lambda: runs.read_status(run_dir).get("state") == "running")
    os.killpg(runs.read_status(run_dir)["pid"], signal.SIGKILL)
    status = wait_for(lambda: ended(run_dir))
    assert status["state"] == "failed"
    assert "ended without reporting" in status["reason"] and status["ended_at"]
    assert isinstance(status["log_tail"], list)


def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    # A process that ignores SIGTERM stands in for a trainer stuck in a step.
    run_dir = tmp_path / "runs" / "stuck"
    run_dir.mkdir(parents=True)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    status = {"state": "running", "pid": proc.pid, "pid_start_time": jobs.process_start_time(proc.pid)}
    (run_dir / "status.json").write_text(json.dumps(status))
    status = jobs.stop(run_dir, wait=1.0, grace=0.5)
    assert status["state"] == "stopped" and "killed" in status["reason"]
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    me = os.getpid()  # alive, but started at another time than the job recorded
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": me, "pid_start_time": 1}))
    assert not jobs.is_alive(runs.read_status(run_dir))
    status = jobs.stop(run_dir)  # would kill pytest itself if identity were only the pid
    assert status["state"] == "failed" and str(me) in status["reason"]


def test_invalid_config_creates_no_run_dir(tmp_path: Path, tiny_llama: str) -> None:
    with pytest.raises(PreflightError) as info:
        jobs.start(demo(**{"dataset.path": str(tmp_path / "missing.csv")}), tmp_path / "runs")
    assert info.value.field == "dataset.path"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_dirs_are_unique_and_complete(tmp_path: Path) -> None:
    cfg = demo()
    first = jobs._create_run_dir(tmp_path, cfg)
    second = jobs._create_run_dir(tmp_path, cfg)
    assert first != second
    for run_dir in (first, second):
        assert runs.read_status(run_dir)["state"] == "starting" and (run_dir / "config.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_process_start_time_reads_field_22() -> None:
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    assert jobs.process_start_time(os.getpid()) == int(fields[19])
    assert jobs.process_start_time(2**22 + 12345) is None
