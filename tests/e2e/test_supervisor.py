"""Runs that survive the page and the app, in Debian's chromium against the real app on localhost.

    .venv/bin/pytest tests/e2e/test_supervisor.py -q     # ~2 min; screenshots: tests/.artifacts/screenshots/

In order (each test continues the previous one): start a long run from the page and close the browser
mid-run (the run goes on); restart the app mid-run and find the run again in a new browser (state, log,
curves), then Stop it from the restarted app (a checkpoint is kept); Resume it from the page (the step count
continues); Start a second run while the first trains (it waits in the shared queue) and cancel it there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import CHROMIUM, _stop_runs, start_app, stop_app
from finetune import procs, runs

expect.set_options(timeout=30_000)
SLOW = 90_000


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("survive-home")


@pytest.fixture(scope="module")
def app(home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app as a restartable process: ``app['url']``, ``app['restart']()``."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium")
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    state = {}

    def restart() -> None:
        if "proc" in state:
            stop_app(state["proc"])
        state["proc"], state["url"] = start_app(home, log)

    restart()
    state["restart"] = restart
    yield state
    stop_app(state["proc"])

    _stop_runs(home)


def new_page(browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US").new_page()
    page.set_default_timeout(SLOW)
    page.goto(url)
    return page


def only_run(home: Path) -> Path:
    listed = runs.list_runs(runs.runs_root(home))
    return Path(listed[-1].path)  # the oldest: the long run every test here follows


def step_of(run_dir: Path) -> int:
    return runs.read_status(run_dir).get("step") or 0


def shown_step(progress) -> int:
    """The step the page's progress line shows (0 before the first)."""
    found = re.search(r"step (\d+)/", progress.inner_text())
    return int(found.group(1)) if found else 0


def until_above(
    read: Callable[[], int], step: int, what: str, timeout: float = 60, state: Callable[[], object] = str
) -> int:
    """``read()`` once it is past ``step``; fails naming ``what`` and its ``state()`` when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (now := read()) > step:
            return now
        time.sleep(0.2)
    raise AssertionError(f"{what} did not get past step {step}: {read()} {state()}")


def wait_step_above(run_dir: Path, step: int, timeout: float = 60) -> int:
    status = lambda: runs.read_status(run_dir)  # noqa: E731
    return until_above(lambda: step_of(run_dir), step, run_dir.name, timeout, status)


def test_closing_the_browser_mid_run_changes_nothing(browser, app, home: Path) -> None:
    page = new_page(browser, app["url"])
    page.locator("#tb-tab-hparams-button").click()
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("40")
    epochs.press("Tab")
    expect(page.locator("#tb-steps-explain")).to_contain_text("× 40 epochs")
    page.locator("#tb-tab-run-button").click()
    page.locator("#tb-start").click()
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("running", re.I), timeout=SLOW)
    run_dir = only_run(home)
    wait_step_above(run_dir, 2)
    page.context.close()
    step = wait_step_above(run_dir, step_of(run_dir) + 4)
    assert runs.read_status(run_dir)["state"] == "running" and step > 4


def test_the_restarted_app_reattaches_and_stop_still_works(browser, app, home: Path, shot) -> None:
    run_dir = only_run(home)
    app["restart"]()  # the app process ends; the job, in its own session, does not
    status = runs.read_status(run_dir)
    assert procs.is_alive(status, run_dir.name) and status["state"] == "running"
    page = new_page(browser, app["url"])
    page.locator("#tb-tab-run-button").click()
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text(re.compile("running", re.I))
    shown = int(re.search(r"step (\d+)/", progress.inner_text()).group(1))
    expect(progress).not_to_contain_text(f"step {shown}/", timeout=20_000)  # still streaming
    expect(page.locator("#tb-log")).to_contain_text(re.compile(r"step \d+/\d+ epoch"))
    expect(page.locator("#tb-loss-plot g.mark-line path").first).to_be_attached()
    shot(page, "7-run-reattached")
    page.locator("#tb-stop").click()
    expect(progress).to_contain_text(re.compile("stopped", re.I), timeout=SLOW)
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and (run_dir / status["checkpoint"] / "trainer_state.json").is_file()
    expect(page.locator("#tb-resume")).to_be_enabled()
    page.context.close()


def test_resume_from_the_page_continues_the_steps(browser, app, home: Path, shot) -> None:
    run_dir = only_run(home)
    stopped_at = runs.read_status(run_dir)["step"]
    page = new_page(browser, app["url"])
    page.locator("#tb-tab-run-button").click()
    page.locator("#tb-resume").click()
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text(re.compile("running", re.I), timeout=SLOW)
    wait_step_above(run_dir, stopped_at + 3)
    until_above(lambda: shown_step(progress), stopped_at, "the page", 30)  # continued, not counted from 1
    loss_steps = [row["step"] for row in runs.read_metrics(run_dir) if "loss" in row]
    assert loss_steps == sorted(set(loss_steps)) and loss_steps[0] <= 2  # one curve, continued
    assert runs.read_status(run_dir)["attempt"] == 2
    expect(page.locator("#tb-log")).to_contain_text(f"resuming from checkpoint-{stopped_at}")
    page.context.close()


def test_a_second_start_waits_in_the_shared_queue(browser, app, home: Path, shot) -> None:
    first = only_run(home)
    page = new_page(browser, app["url"])
    page.locator("#tb-tab-run-button").click()
    page.locator("#tb-start").click()
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text(re.compile("queued", re.I))
    expect(progress).to_contain_text("waiting in the queue: 1 of 1")
    queued = next(r for r in runs.list_runs(runs.runs_root(home)) if r.state == "queued")
    expect(page.locator("#tb-queue")).to_contain_text(queued.id)
    assert runs.read_status(first)["state"] == "running"  # one slot: the first keeps it
    other = new_page(browser, app["url"])  # another browser sees the same queue
    other.locator("#tb-tab-run-button").click()
    expect(other.locator("#tb-queue")).to_contain_text(queued.id)
    other.context.close()
    shot(page, "7-run-queued")
    page.locator("#tb-queue-cancel").click()
    expect(progress).to_contain_text(re.compile("cancelled", re.I))
    # A shown gr.Group carries its id on two elements: on the bare id, a check made while Cancel's answer is
    # still on its way (the live line says "cancelled" first) fails at once on strict mode instead of waiting.
    expect(page.locator("#tb-queue-group").first).to_be_hidden()
    assert runs.read_status(Path(queued.path))["state"] == "cancelled"
    page.context.close()
