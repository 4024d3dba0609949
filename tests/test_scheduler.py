"""Tests for finetune/scheduler.py (queue, slots, supervisor), finetune/resume.py and finetune/notify.py:
real training subprocesses on the tiny model.

    .venv/bin/pytest tests/test_scheduler.py -q

Covers: kill -9 of a job -> ``failed`` within seconds with the reason, then Resume finishes it with the
step count continuing (metrics and TensorBoard included); two simultaneous Starts -> one runs, one queues,
and the second starts when the first ends; the queue's order, cancel and move; the webhook.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from test_jobs import demo, ended, sleeper, wait_for

from finetune import jobs, resume, runs, scheduler
from finetune.errors import DataError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNEBOARD_SLOTS", "cpu")  # one slot, whatever this machine has
    return tmp_path / "runs"


@pytest.fixture
def supervisor(root: Path):
    """The dashboard's supervisor thread over ``root``, ticking fast."""
    sup = scheduler.Supervisor(root, every=0.25)
    sup.start()
    yield sup
    sup.halt.set()
    sup.join(timeout=10)


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch):
    """A local Slack-style receiver; yields the list of JSON bodies it got."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TUNEBOARD_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    yield received
    server.shutdown()


def loss_steps(run_dir: Path) -> list[int]:
    return [row["step"] for row in runs.read_metrics(run_dir) if "loss" in row]


def tensorboard_loss_steps(run_dir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), purge_orphaned_data=True)
    acc.Reload()
    return [event.step for event in acc.Scalars("train/loss")]


def test_kill_9_fails_within_seconds_then_resume_continues_the_steps(
    root: Path, supervisor, webhook: list[dict], tiny_llama: str
) -> None:
    overrides = {
        "training.max_steps": 40,
        "training.per_device_train_batch_size": 2,
        "training.logging_steps": 1,
        "training.save_strategy": "steps",
        "training.save_steps": 5,
    }
    run_dir = scheduler.submit(demo(**overrides), root, check=False)
    wait_for(lambda: (run_dir / "checkpoint-10" / "trainer_state.json").is_file())
    wait_for(lambda: runs.read_status(run_dir).get("step", 0) >= 12, every=0.02)
    os.killpg(runs.read_status(run_dir)["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    status = wait_for(lambda: (s := runs.read_status(run_dir)).get("state") == "failed" and s, every=0.05)
    assert time.monotonic() - killed_at < 5, "the supervisor took too long to notice"
    assert "SIGKILL" in status["reason"] and "out of memory" in status["reason"]
    assert status["log_tail"] and any("step" in line for line in status["log_tail"])
    checkpoint = resume.checkpoint_step(resume.last_checkpoint(run_dir))
    assert 10 <= checkpoint <= status["step"]

    scheduler.resume(run_dir)  # queued again; the free slot starts it at once
    status = wait_for(lambda: ended(run_dir), timeout=180)
    assert status["state"] == "finished", status
    assert status["attempt"] == 2 and status["step"] == status["max_steps"] == 40
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert f"resuming from checkpoint-{checkpoint} ===" in log
    # The curves continue: every step once, in order -- the steps after the checkpoint were trained again
    # and logged once, not twice.
    assert loss_steps(run_dir) == list(range(1, 41))
    assert tensorboard_loss_steps(run_dir) == list(range(1, 41))
    final_state = json.loads((run_dir / "final" / "trainer_state.json").read_text())
    assert final_state["global_step"] == 40
    wait_for(lambda: len(webhook) >= 2, timeout=10)
    assert [m["state"] for m in webhook] == ["failed", "finished"]
    assert run_dir.name in webhook[0]["text"] and "SIGKILL" in webhook[0]["text"]
    assert webhook[1]["content"] == webhook[1]["text"] and webhook[1]["run"] == run_dir.name


def test_two_starts_at_the_same_moment_one_runs_one_queues(root: Path, tiny_llama: str) -> None:
    cfg = demo(**{"training.max_steps": 4, "training.save_strategy": "no"})
    barrier, made = threading.Barrier(2), []

    def start() -> None:
        barrier.wait()
        made.append(scheduler.submit(cfg, root, check=False))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    states = sorted(runs.read_status(d)["state"] for d in made)
    assert states == ["queued", "starting"], states
    first = next(d for d in made if runs.read_status(d)["state"] == "starting")
    second = next(d for d in made if d != first)
    assert scheduler.queue(root) == [second.name]
    # No supervisor yet: the queue waits. Ticking it while watching that two never run at once.
    overlap = []
    while not all(runs.read_status(d).get("state") == "finished" for d in made):
        scheduler.tick(root)
        overlap.append(sum(runs.is_live(runs.read_status(d)) for d in made))
        time.sleep(0.05)
        assert len(overlap) < 4000, [runs.read_status(d) for d in made]
    assert max(overlap) == 1
    assert runs.read_status(second)["started_at"] >= runs.read_status(first)["ended_at"]


def test_starts_from_two_processes_never_share_the_slot(root: Path, tiny_llama: str, tmp_path: Path) -> None:
    config_path = tmp_path / "c.yaml"
    config_path.write_text(demo(**{"training.max_steps": 200}).to_yaml(), encoding="utf-8")
    cli = [sys.executable, "-m", "finetune", "start", str(config_path), "--home", str(root.parent)]
    procs_ = [subprocess.Popen(cli, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    made = [Path(p.communicate(timeout=180)[0].strip()) for p in procs_]
    try:
        states = sorted(runs.read_status(d)["state"] for d in made)
        assert states.count("queued") == 2 and len(set(made)) == 3, states
    finally:
        for d in made:
            scheduler.stop(d)
        wait_for(lambda: all(not runs.is_live(jobs.reconcile(d)) for d in made), timeout=120)


def test_queue_order_move_and_cancel(root: Path, tmp_path: Path) -> None:
    busy = sleeper(root / "busy")  # a running job holds the only slot
    try:
        cfg = demo(**{"training.max_steps": 2, "training.save_strategy": "no"})
        a, b, c = (scheduler.submit(cfg, root, check=False).name for _ in range(3))
        assert scheduler.queue(root) == [a, b, c]
        assert scheduler.move(root, c, -1) == [a, c, b]
        assert scheduler.move(root, c, -5) == [c, a, b]
        assert scheduler.move(root, c, +1) == [a, c, b]
        assert scheduler.cancel(root / a)["state"] == "cancelled"
        assert scheduler.queue(root) == [c, b]
        assert scheduler.stop(root / b)["state"] == "cancelled"  # Stop on a queued run cancels it
        assert scheduler.tick(root) == []  # still busy
        # Another app process sees the same queue: it lives on disk.
        code = f"from finetune import scheduler; print(scheduler.queue({str(root)!r}))"
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        assert out.stdout.strip() == str([c])
        busy.kill()
        busy.wait()
        assert scheduler.tick(root) == [c]  # the slot is free: the head of the queue starts
        assert runs.read_status(root / "busy")["state"] == "failed"
        wait_for(lambda: ended(root / c), timeout=120)
        # A cancelled run can be queued again.
        scheduler.resume(root / a)
        wait_for(lambda: ended(root / a), timeout=120)
        assert runs.read_status(root / a)["state"] == "finished"
    finally:
        busy.kill()


def test_resume_refuses_what_it_cannot_do(root: Path, tmp_path: Path, tiny_llama: str) -> None:
    data = tmp_path / "data.csv"
    data.write_text("prompt,completion\n" + "hi,hello\n" * 20, encoding="utf-8")
    run_dir = jobs.create(demo(**{"dataset.path": str(data), "training.max_steps": 2}), root)
    with pytest.raises(jobs.JobError, match="only a stopped, failed or cancelled"):
        scheduler.resume(run_dir)  # it is queued
    scheduler.cancel(run_dir)
    data.unlink()  # the dataset disappeared since the run was made
    with pytest.raises(DataError) as info:
        scheduler.resume(run_dir)
    assert info.value.field == "dataset.path" and "does not exist" in str(info.value)
    assert runs.read_status(run_dir)["state"] == "cancelled"  # left as it was


def test_slots_follow_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEBOARD_SLOTS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert scheduler.slots() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert scheduler.slots() == ["cpu"]
    monkeypatch.setenv("TUNEBOARD_SLOTS", "0,1,1")
    assert scheduler.slots() == ["0", "1"]


def test_cli_refuses_clearly(root: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)

    result = cli("finetune", "resume", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "is not a run directory" in result.stderr
    assert "Traceback" not in result.stderr
    queued = jobs.create(demo(), root, check=False)  # nothing supervises root: it stays queued
    result = cli("finetune", "train", str(queued / "config.yaml"), "--resume")
    assert result.returncode == 2 and f"run {queued.name} is queued: stop or cancel it first" in result.stderr
    assert runs.read_status(queued)["state"] == "queued"  # a second trainer never touched it
    result = cli("finetune", "queue", "--home", str(root.parent))
    assert result.stdout.split() == [queued.name]


def test_a_multi_gpu_run_takes_a_gpu_set_and_nothing_overtakes_the_next(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three GPU slots: a 2-process run takes two; the next 2-process run waits for two, and a 1-GPU run
    queued after it waits too. The spawn is recorded, not run: what is under test is which slots each gets."""
    from finetune import status as st

    monkeypatch.setenv("TUNEBOARD_SLOTS", "0,1,2")
    given: dict[str, str] = {}

    def launch(run_dir: Path, slot: str) -> dict:
        given[run_dir.name] = slot
        return st.update(run_dir, state=st.STARTING, slot=slot, launched_at=st.now_iso())

    monkeypatch.setattr(jobs, "launch", launch)
    two = {"launch.num_processes": 2}
    a = scheduler.submit(demo(**two), root, check=False)
    b = scheduler.submit(demo(**two), root, check=False)
    c = scheduler.submit(demo(), root, check=False)
    assert given == {a.name: "0,1"} and scheduler.queue(root) == [b.name, c.name]
    st.update(a, state=st.FINISHED)
    scheduler.dispatch(root)
    assert given[b.name] == "0,1" and given[c.name] == "2"
