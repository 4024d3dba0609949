"""The inference worker (finetune/worker.py): the real process the page talks to, on the shared demo run.

.venv/bin/pytest tests/test_worker.py -q      # ~30 s after the demo run
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_jobs import demo

from finetune import config as cfg
from finetune import jobs
from finetune.errors import JobError
from finetune.worker import Worker

SHORT = cfg.GenerationConfig(max_new_tokens=12, temperature=0.0)


@pytest.fixture
def worker(demo_run: Path, tmp_path: Path):
    handle = Worker(demo_run.parent, tmp_path / "worker.log")
    yield handle
    handle.close()


def test_the_tuned_and_the_base_model_answer_the_same_prompt(worker: Worker, demo_run: Path) -> None:
    loaded = worker.load("tuned", demo_run)
    assert loaded["weights"] == "final" and loaded["device"] == "cpu" and loaded["task"] == "sft"
    assert worker.load("tuned", demo_run) is None  # held already: not loaded again
    assert worker.load("base", demo_run)["weights"] == "base"
    pid = worker.proc.pid
    answers = {}
    for slot in ("tuned", "base"):
        messages = list(worker.answer(slot, [{"role": "user", "content": "日本の首都はどこですか?"}], SHORT))
        *pieces, last = messages
        assert all("piece" in m for m in pieces) and "reply" in last
        answers[slot] = last["reply"]
        assert answers[slot]["text"] == "".join(m["piece"] for m in pieces)
    assert answers["tuned"]["text"] != answers["base"]["text"]  # the run changed the model
    assert worker.proc.pid == pid  # one process held both
    assert worker.device_note is None  # no GPU here: the CPU is not a fallback


def test_an_answer_left_part_way_does_not_leak_into_the_next(worker: Worker, demo_run: Path) -> None:
    worker.load("tuned", demo_run)
    stream = worker.answer("tuned", "Hello", cfg.GenerationConfig(max_new_tokens=40, temperature=0.0))
    next(stream)
    stream.close()  # the page moved on after the first piece
    again = list(worker.answer("tuned", "Hello", SHORT))
    assert "reply" in again[-1] and all("piece" in m for m in again[:-1])


def test_refusals_come_back_as_messages_and_the_worker_keeps_serving(
    worker: Worker, demo_run: Path, tmp_path: Path, tiny_llama: str
) -> None:
    empty = jobs.create(demo(), tmp_path / "runs")
    with pytest.raises(JobError, match="neither final/ nor a complete checkpoint"):
        worker.load("tuned", empty)
    with pytest.raises(JobError, match="no tuned model is loaded"):
        list(worker.answer("tuned", "Hi", SHORT))
    assert worker.load("tuned", demo_run)["weights"] == "final"


def test_an_idle_worker_exits_and_comes_back_on_the_next_request(worker: Worker, demo_run: Path) -> None:
    env = os.environ | {"TUNEBOARD_WORKER_IDLE": "1"}
    alone = subprocess.Popen(
        [sys.executable, "-m", "finetune", "worker"], cwd=ROOT, env=env, stdin=subprocess.PIPE
    )
    assert alone.wait(timeout=30) == 0  # nothing asked for a second: it leaves
    worker.load("tuned", demo_run)
    worker.proc.kill()
    worker.proc.wait()
    time.sleep(0.1)
    assert worker.load("tuned", demo_run)["weights"] == "final"  # a new process, the model loaded again
