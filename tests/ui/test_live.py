"""The Run section's live line (finetune/ui/live.py): GET /tb-live/RUN answers the watched run's progress
bar and new log lines, behind the page's login, for run folders only. The page polling it is
tests/e2e/test_dashboard.py (test_metrics_reach_the_page_within_two_seconds,
test_a_training_run_streams_without_a_gradio_event_a_second).

.venv/bin/pytest tests/ui/test_live.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from finetune.ui import live, run_tab
from ui.conftest import route_pages
from ui.test_run_tab import append, make_run

TOKEN = "hf_" + "a1B2" * 9  # the shape of a Hugging Face token


@pytest.fixture
def serve(tmp_path: Path):
    """``serve(**launch)``: a page with only the live route mounted over tmp_path/runs; returns its URL."""
    with route_pages(lambda demo: live.routes(tmp_path / "runs", demo)) as start:
        yield start


def a_running_run(root: Path) -> Path:
    run_dir = make_run(root, "20261202-101500-sft-tiny", "running", "2026-12-02T10:15:00+00:00",
                       step=5, max_steps=10, pid=1)  # fmt: skip
    append(run_dir / "metrics.jsonl", *(json.dumps({"step": s, "loss": 3.0 - s / 10}) for s in range(1, 6)))
    append(run_dir / "train.log", "loading the model", f"login with token {TOKEN}")
    return run_dir


def test_the_progress_and_the_new_log_lines_in_the_page_language(serve, tmp_path: Path) -> None:
    run_dir = a_running_run(tmp_path / "runs")
    url = f"{serve()}/tb-live/{run_dir.name}"
    got = httpx.get(url, params={"lang": "ja", "log": 0}, timeout=30).json()
    assert got["state"] in ("running", "failed")  # pid 1 is not its process: the page's reconcile says so
    assert "ステップ" in got["progress"] or "step" in got["progress"]
    assert got["log"][0] == "loading the model" and TOKEN not in json.dumps(got)  # tokens stay hidden
    assert got["log_off"] == (run_dir / "train.log").stat().st_size
    append(run_dir / "train.log", "step 6")
    again = httpx.get(url, params={"lang": "en", "log": got["log_off"]}, timeout=30).json()
    assert again["log"] == ["step 6"]  # only what was written since
    assert httpx.get(url, timeout=30).json()["log"] == []  # no offset: no log


def test_the_answer_is_the_bar_the_gradio_view_draws(tmp_path: Path) -> None:
    run_dir = a_running_run(tmp_path)
    (run_dir / "status.json").write_text(json.dumps({"state": "queued"}))
    got = live.snapshot(tmp_path, run_dir.name, "ja", -1)
    drawn = run_tab.live_line(run_dir.name, {"state": "queued"}, [], got["queue"], "ja")
    assert got["progress"] in drawn and "待機中" in drawn
    assert f"data-run='{run_dir.name}'" in drawn and "data-state='queued'" in drawn


def test_the_first_points_of_a_running_run_are_plotted_at_once(tmp_path: Path) -> None:
    """The answer counts the run's metrics rows; a view whose plots are empty says so (data-plotted='0'),
    live.js then asks for a redraw, and that redraw draws the points whenever the last one was."""
    run_dir = a_running_run(tmp_path)
    assert live.snapshot(tmp_path, run_dir.name, "en", -1)["points"] == 5
    running = {"state": "running"}
    assert "data-plotted='0'" in run_tab.live_line(run_dir.name, running, [], [], "en", plotted=False)
    rows = [{"step": 1, "loss": 2.0}]
    now = run_tab.time.monotonic()
    assert run_tab._plots_due({"rows": rows, "plotted": 0, "plotted_at": now}, running)
    assert not run_tab._plots_due({"rows": rows * 2, "plotted": 1, "plotted_at": now}, running)  # too soon
    assert not run_tab._plots_due({"rows": rows, "plotted": 1, "plotted_at": 0.0}, running)  # nothing new
    assert run_tab._plots_due({"rows": rows * 2, "plotted": 1, "plotted_at": now}, {"state": "finished"})


@pytest.mark.parametrize("name", ["..", ".%2e", "%2e%2e", ".hidden", "nope", "..%2F..%2Fetc", "a%00b"])
def test_only_a_run_folder_by_its_name(serve, tmp_path: Path, name: str) -> None:
    a_running_run(tmp_path / "runs")
    (tmp_path / "runs" / ".hidden").mkdir()
    response = httpx.get(f"{serve()}/tb-live/{name}", params={"log": 0}, timeout=30)
    assert "loading the model" not in response.text
    if response.url.path.startswith("/tb-live/"):  # else the client resolved "..": another route answered
        assert response.status_code == 404


def test_behind_the_same_login_as_the_page(serve, tmp_path: Path) -> None:
    run_dir = a_running_run(tmp_path / "runs")
    url = serve(auth=("ada", "lovelace"))
    assert httpx.get(f"{url}/tb-live/{run_dir.name}", params={"log": 0}, timeout=30).status_code == 401
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
        assert client.get(f"/tb-live/{run_dir.name}", params={"log": 0}).json()["log"]


def test_the_queue_polls_at_the_slower_pace_gradio_reads() -> None:
    """An idle gradio 6.31 queue wakes every 1 ms (9% of a core with no page open, measured; 1.6% at 20 ms):
    ui.queue slows it, and gradio's loops must still read those names (a rename fails here)."""
    import inspect

    import gradio as gr
    from gradio import queueing

    from finetune import ui

    queue = ui.queue(gr.Blocks())._queue
    assert {name: getattr(queue, name) for name in ui.QUEUE_POLLS} == ui.QUEUE_POLLS
    loops = inspect.getsource(queueing.Queue.start_processing) + inspect.getsource(
        queueing.Queue.start_progress_updates
    )
    assert all(f"self.{name})" in loops for name in ui.QUEUE_POLLS)
    assert gr.Blocks().queue()._queue.sleep_when_free < ui.QUEUE_POLLS["sleep_when_free"]  # gradio's own pace
