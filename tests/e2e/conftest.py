"""Browser-test set-up: the real ``app.py`` in a subprocess on a free port, and Debian's chromium.

    .venv/bin/pytest tests/e2e -q        # needs /usr/bin/chromium (make browser installs it)

The app gets its own TUNEBOARD_HOME (runs and uploads) and TUNEBOARD_CACHE (the tiny model), so a test run
never touches a real data directory. Any training process still alive at the end is stopped by its pid.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "tests" / ".artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def app_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tuneboard-home")


def start_app(
    home: Path, log: Path, port: int | None = None, cwd: Path = ROOT, **extra: str
) -> tuple[subprocess.Popen, str]:
    """``python app.py --port N`` over the data directory ``home``, as a user would; returns (proc, url).

    ``cwd``: the checkout whose app.py runs (bench/bench_memory.py runs another one beside this).
    """
    port = port or free_port()
    env = os.environ | {
        "TUNEBOARD_HOME": str(home),
        "TUNEBOARD_CACHE": os.environ.get("TUNEBOARD_CACHE") or str(home.parent / "cache"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **extra,
    }
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    wait_until_up(url + "healthz", proc, log)  # answers without a login, so a Space-like app counts too
    return proc, url


class ConfigWatch:
    """A second client fetching ``/config`` every 0.1 s while a test (or the bench) makes the app work.

    ``slowest``: its longest wait in seconds; ``answers``: how many it got. ``login``: (user, password).
    """

    def __init__(self, url: str, login: tuple[str, str] | None = None, timeout: float = 60.0):
        import httpx

        self.client = httpx.Client(base_url=url, timeout=timeout)
        if login:
            form = {"username": login[0], "password": login[1]}
            assert self.client.post("/login", data=form).status_code == 200
        self.slowest, self.answers, self.stop = 0.0, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.answers += self.client.get("/config").status_code == 200
            except Exception:  # noqa: BLE001 - a timeout counts as the slowest answer
                pass
            self.slowest = max(self.slowest, time.monotonic() - started)
            time.sleep(0.1)

    def __enter__(self) -> ConfigWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(self.client.timeout.read or 60)
        self.client.close()


@contextmanager
def running_app(
    tmp_path_factory: pytest.TempPathFactory, name: str, **extra: str
) -> Iterator[tuple[str, Path]]:
    """A test module's own app over a fresh data directory: yields (url, home); stops it and its runs."""
    home = tmp_path_factory.mktemp(f"{name}-home")
    proc, url = start_app(home, home.parent / f"{name}-app.log", **extra)
    try:
        yield url, home
    finally:
        stop_app(proc)
        _stop_runs(home)


@contextmanager
def opened(browser: Any, url: str, timeout: float = 60_000) -> Iterator[Any]:
    """A new page on ``url`` with an English browser, once the demo's first analysis is on screen."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(timeout)
    page.goto(url)
    try:
        expect(page.get_by_text("300 training records")).to_be_visible(timeout=timeout)
        yield page
    finally:
        context.close()


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def app_url(app_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Start ``python app.py --port N`` as a user would; yields its URL; stops it and its runs afterwards."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    proc, url = start_app(app_home, app_home.parent / "dashboard-app.log")
    try:
        yield url
    finally:
        stop_app(proc)
        _stop_runs(app_home)


def _stop_runs(home: Path) -> None:
    from finetune import runs, scheduler

    for run in runs.list_runs(runs.runs_root(home)):
        if runs.is_active(runs.read_status(Path(run.path))):
            scheduler.stop(Path(run.path), wait=30)


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Not the session: playwright's sync API keeps an asyncio loop running
    in this thread while it is open, which would break later tests that run their own loop."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shot():
    """``shot(page, name)`` saves tests/.artifacts/screenshots/NAME.png (full page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.keyboard.press("Escape")  # close an open dropdown list
        page.locator("#tb-title").click()  # and take the focus off the last field
        page.wait_for_timeout(400)
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
