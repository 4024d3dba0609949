"""Tests for finetune/jobs.py and finetune/procs.py: real training subprocesses on the tiny model, started,
stopped, killed and reconciled, and the identity and environment that make that safe.

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

from finetune import config, jobs, procs, runs, scheduler
from finetune.errors import DataError

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_" + "Tb7x" * 8 + "Qz"  # the shape of a real token (34 characters after hf_)


def demo(**overrides) -> config.Config:
    return config.load(ROOT / "presets" / "demo.yaml", overrides)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def ended(run_dir: Path) -> dict | None:
    status = jobs.reconcile(run_dir)
    return None if runs.is_live(status) or status.get("state") == "queued" else status


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def sleeper(run_dir: Path, ignore_term: bool = False) -> subprocess.Popen:
    """A process that stands in for a trainer, recorded in run_dir/status.json as the run's job."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    code = f"import signal, time; {ignore}print('ready', flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    status = {"state": "running", "run_id": run_dir.name, **procs.identity(proc.pid)}
    (run_dir / "status.json").write_text(json.dumps(status))
    return proc


def test_a_job_runs_in_its_own_group_with_an_allow_listed_environment(
    tmp_path: Path, tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # the job needs it (Hub downloads)...
    monkeypatch.setenv("TUNEBOARD_AUTH", "ada:dashboard-password")  # ...but never the dashboard's secrets
    monkeypatch.setenv("OAUTH_CLIENT_SECRET", "oauth-client-secret")
    home = tmp_path / "home"
    cfg = demo(**{"training.max_steps": 6, "training.save_strategy": "steps", "training.save_steps": 3})
    run_dir = scheduler.submit(cfg, runs.runs_root(home))
    status = runs.read_status(run_dir)
    pid = status["pid"]
    assert status["run_id"] == run_dir.name and status["pid_start_time"] == procs.start_time(pid)
    assert status["boot_id"] == procs.boot_id() and status["slot"] == "cpu"
    assert status["argv"][1:4] == ["-m", "finetune", "train"] and "--run-dir" in status["argv"]
    if procs.is_alive(status):  # the tiny model may already be done on a fast machine
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session, own group
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/1") == str(run_dir / "train.log")  # a file, never a pipe
        env = environ_of(pid)
        assert env["HF_TOKEN"] == FAKE_TOKEN and env["TUNEBOARD_SUPERVISED"] == "1"
        assert "TUNEBOARD_AUTH" not in env and "OAUTH_CLIENT_SECRET" not in env
    final = wait_for(lambda: ended(run_dir))
    assert final["state"] == "finished", final
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert "step 6/6" in log and log.count("step 6/6") == 1  # redirected once, not also teed
    assert (run_dir / "checkpoint-6" / "training_args.bin").is_file()
    # HF_TOKEN is nowhere in the data directory: not in configs, logs, metrics, checkpoints or event files.
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert FAKE_TOKEN.encode() not in data, path
            assert b"dashboard-password" not in data, path


def test_procs_job_env_keeps_what_training_needs() -> None:
    source = {"PATH": "/bin", "HF_HOME": "/h", "CUDA_VISIBLE_DEVICES": "0", "LC_ALL": "C.UTF-8",
              "TUNEBOARD_HOME": "/d", "TUNEBOARD_AUTH": "a:b", "GRADIO_SERVER_PORT": "1",
              "AWS_SECRET_ACCESS_KEY": "x", "OAUTH_CLIENT_SECRET": "y"}  # fmt: skip
    env = procs.job_env({"TUNEBOARD_SUPERVISED": "1"}, source=source)
    assert set(env) == {"PATH", "HF_HOME", "CUDA_VISIBLE_DEVICES", "LC_ALL", "TUNEBOARD_HOME",
                        "TUNEBOARD_SUPERVISED"}  # fmt: skip


def test_stop_is_graceful_and_keeps_a_checkpoint(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = scheduler.submit(demo(**{"training.num_train_epochs": 200}), tmp_path / "runs", check=False)
    wait_for(lambda: runs.read_status(run_dir).get("step", 0) >= 4)
    status = jobs.stop(run_dir, wait=90)
    assert status["state"] == "stopped", status
    assert status["checkpoint"] and (run_dir / status["checkpoint"] / "trainer_state.json").is_file()
    assert "received SIGTERM" in (run_dir / "train.log").read_text(encoding="utf-8")
    assert jobs.stop(run_dir)["state"] == "stopped"  # stopping a stopped run changes nothing


def test_stop_escalates_to_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    proc = sleeper(tmp_path / "runs" / "stuck", ignore_term=True)  # a trainer stuck inside a step
    status = jobs.stop(tmp_path / "runs" / "stuck", wait=1.0, grace=0.5)
    assert status["state"] == "stopped" and "killed" in status["reason"]
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    me = os.getpid()  # alive, but started at another time than the job recorded
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": me, "pid_start_time": 1}))
    assert not procs.is_alive(runs.read_status(run_dir))
    status = jobs.stop(run_dir)  # would kill pytest itself if identity were only the pid
    assert status["state"] == "failed" and str(me) in status["reason"]


def test_a_pid_from_another_boot_or_another_run_is_not_the_job(tmp_path: Path) -> None:
    proc = sleeper(tmp_path / "original")
    try:
        status = runs.read_status(tmp_path / "original")
        assert procs.is_alive(status, "original")
        assert not procs.is_alive(status | {"boot_id": "another-boot"}, "original")
        assert not procs.is_alive(status, "a-copy-of-original")  # a copied run directory
        copy = tmp_path / "a-copy-of-original"
        copy.mkdir()
        (copy / "status.json").write_text(json.dumps(status))
        assert jobs.stop(copy)["state"] == "failed"  # the copy is not running...
        assert proc.poll() is None  # ...and the original's process was not touched
    finally:
        proc.kill()


def test_invalid_config_creates_no_run_dir(tmp_path: Path, tiny_llama: str) -> None:
    with pytest.raises(DataError) as info:
        scheduler.submit(demo(**{"dataset.path": str(tmp_path / "missing.csv")}), tmp_path / "runs")
    assert info.value.field == "dataset.path"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_dirs_are_unique_and_complete(tmp_path: Path) -> None:
    cfg = demo()
    first = jobs.create(cfg, tmp_path, check=False)
    second = jobs.create(cfg, tmp_path, check=False)
    assert first != second
    for run_dir in (first, second):
        assert runs.read_status(run_dir)["state"] == "queued" and (run_dir / "config.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.is_dir()] == []


def test_process_start_time_reads_field_22() -> None:
    fields = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    assert procs.start_time(os.getpid()) == int(fields[19])
    assert procs.start_time(2**22 + 12345) is None


def test_exit_codes_in_plain_words() -> None:
    assert "SIGKILL" in procs.describe_exit(-9) and "out-of-memory" in procs.describe_exit(-9)
    assert "status 3" in procs.describe_exit(3)
    assert "without reporting" in procs.describe_exit(None)
