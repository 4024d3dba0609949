"""The app as a container runs it: docker stop's SIGTERM stops the runs with a checkpoint, and the next start
resumes them.

    .venv/bin/pytest tests/test_container.py -q      # ~1 min: two app starts and a real training run

No Docker engine here: the test starts app.py with the environment the Dockerfile sets (TUNEBOARD_CONTAINER=1)
and sends it the SIGTERM that tini passes on when `docker stop` asks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from conftest import ROOT, free_port, run_cli
from e2e.conftest import start_app as e2e_app
from test_jobs import wait_for

from finetune import config as cfg
from finetune import runs


def start_app(home: Path, port: int) -> subprocess.Popen:
    """app.py as the Dockerfile runs it (TUNEBOARD_CONTAINER=1), on one slot."""
    log = home / f"app-{time.monotonic_ns()}.log"
    proc, _ = e2e_app(home, log, port, TUNEBOARD_CONTAINER="1", TUNEBOARD_SLOTS="cpu")
    return proc


def test_docker_stop_checkpoints_the_runs_and_the_next_start_resumes_them(tmp_path: Path) -> None:
    home, port = tmp_path / "data", free_port()
    home.mkdir()
    app = start_app(home, port)
    try:
        config = tmp_path / "run.yaml"  # the demo, long enough to be stopped halfway, with checkpoints
        steps = {"max_steps": 120, "save_strategy": "steps", "save_steps": 10, "logging_steps": 1}
        demo = cfg.load(ROOT / "presets/demo.yaml", {f"training.{k}": v for k, v in steps.items()})
        config.write_text(demo.to_yaml(), encoding="utf-8")
        started = run_cli("start", str(config), "--home", str(home))
        assert started.returncode == 0, started.stderr
        run_dir = Path(started.stdout.strip().splitlines()[-1])
        wait_for(lambda: (run_dir / "checkpoint-10" / "trainer_state.json").is_file(), timeout=180)
        app.send_signal(signal.SIGTERM)  # what tini passes on from `docker stop`
        assert app.wait(timeout=150) == 0
    finally:
        app.kill()
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and status["resume_on_start"] is True, status
    stopped_at = status["step"]
    assert stopped_at < status["max_steps"]

    app = start_app(home, port)  # the container starts again
    try:
        done = wait_for(lambda: (s := runs.read_status(run_dir))["state"] == "finished" and s, timeout=300)
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=60)
    assert done["attempt"] == 2 and done["step"] == done["max_steps"] and not done.get("resume_on_start")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["resume"] for h in history] == [False, True]
    assert "resuming from checkpoint-" in (run_dir / "train.log").read_text(encoding="utf-8")
