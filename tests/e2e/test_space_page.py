"""The page as a Hugging Face Space shows it (issue 10): the app started with a Space's environment
(SYSTEM=spaces, SPACE_ID, Hugging Face OAuth, TUNEBOARD_HOME on a folder of its own), in a real browser
signed in as the Space's owner.

    .venv/bin/pytest tests/e2e/test_space_page.py -q      # ~1 min: two app starts

- GPU hardware, data directory on the Space's own disk: a banner says runs vanish on restart and how to mount
  a Storage Bucket; Start is on.
- ZeroGPU hardware (SPACES_ZERO_GPU): Start is off with the reason and the hardware to pick, and everything
  before Start still works (an upload, the step arithmetic). (A data directory on a mounted bucket, another
  filesystem, gets no banner: tests/test_hosting.py, since the only other filesystem here is /dev/shm, which
  the page never reads.)
- Someone signed in to Hugging Face but not on the allow-list sees no dashboard: who they are signed in as,
  why, and a Sign out link (signing in again would only loop back).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SPACE_OAUTH, session_cookie
from playwright.sync_api import expect

from e2e.conftest import CHROMIUM, start_app, stop_app


def signed_in(browser, url: str, user: str = "ada"):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.add_cookies([{"name": "session", "value": session_cookie(user), "url": url}])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return context, page


@pytest.fixture()
def space(tmp_path: Path):
    """start(home, **env) -> url of a Space-like app; stopped after the test."""
    started = []
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")

    def start(home: Path, **env: str) -> str:
        proc, url = start_app(home, tmp_path / f"app-{len(started)}.log", **SPACE_OAUTH, **env)
        started.append(proc)
        return url

    yield start
    for proc in started:
        stop_app(proc)


def test_space_on_gpu_hardware_warns_that_its_own_disk_is_wiped(browser, space, tmp_path: Path, shot) -> None:
    home = tmp_path / "space-home"
    url = space(home)
    context, page = signed_in(browser, url)
    try:
        expect(page.get_by_text("300 training records")).to_be_visible(timeout=120_000)
        banner = page.locator("#tb-ephemeral")
        expect(banner).to_contain_text("Runs here vanish when this Space restarts")
        expect(banner).to_contain_text(str(home.resolve()))
        expect(banner).to_contain_text("TUNEBOARD_HOME=/data")
        page.locator("#tb-tab-run-button").click()
        expect(page.locator("#tb-start")).to_be_enabled()
        expect(page.locator("#tb-zero-gpu")).to_have_count(0)
        page.get_by_label("日本語").check()
        expect(banner).to_contain_text("再起動すると")
        shot(page, "space-ephemeral-banner")
    finally:
        context.close()
    stranger, page = signed_in(browser, url, user="mallory")
    try:
        expect(page.locator("body")).to_contain_text("signed in to Hugging Face as mallory")
        expect(page.locator("#tb-title")).to_have_count(0)
        page.get_by_role("link", name="Sign out").click()  # the session ends; signing in again is up to them
        assert not [c for c in stranger.cookies() if c["name"] == "session" and c["value"] != "null"]
    finally:
        stranger.close()


def test_zero_gpu_space_turns_start_off_and_keeps_the_rest(browser, space, tmp_path: Path, shot) -> None:
    home = tmp_path / "zero-home"
    url = space(home, SPACES_ZERO_GPU="true")
    context, page = signed_in(browser, url)
    try:
        expect(page.get_by_text("300 training records")).to_be_visible(timeout=120_000)
        page.get_by_label("Upload a file").check()
        data = tmp_path / "faq.csv"
        data.write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(40)), encoding="utf-8")
        page.locator("#tb-upload input[type=file]").set_input_files(str(data))
        expect(page.get_by_text("training records")).to_contain_text("40 training records", timeout=60_000)
        page.locator("#tb-tab-hparams-button").click()
        expect(page.locator("#tb-steps-explain")).to_contain_text("optimizer steps")
        page.locator("#tb-tab-run-button").click()
        expect(page.locator("#tb-start")).to_be_disabled()
        note = page.locator("#tb-zero-gpu")
        expect(note).to_contain_text("ZeroGPU")
        expect(note).to_contain_text("L4, L40S, A10G, A100 or H100")
        shot(page, "space-zero-gpu-start-off")
    finally:
        context.close()
    assert not list((home / "runs").glob("*/status.json"))  # nothing started
