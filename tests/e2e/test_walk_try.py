"""Section 7, Try it (issue 11): the demo trained through the page, then a Japanese message answered by the
tuned model and by its base side by side, streamed; the stop figure of the run beside them.

    .venv/bin/pytest tests/e2e/test_walk_try.py -q      # ~2 min: one demo run and the chat

The models answer in the inference worker (finetune/worker.py), a process of its own: the test checks
that the dashboard's process never loads one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import opened, running_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    with running_app(tmp_path_factory, "try") as (url, home):
        yield url, home


def test_the_demo_run_answers_beside_its_base_and_shows_whether_it_stops(browser, app, shot) -> None:
    url, home = app
    with opened(browser, url) as page:
        page.locator("#tb-tab-run-button").click()
        page.locator("#tb-start").click()
        expect(page.locator("#tb-progress")).to_contain_text("finished", timeout=300_000)
        page.locator("#tb-tab-try-button").click()
        expect(page.locator("#tb-try-weights input")).to_have_value("final", timeout=30_000)
        expect(page.locator("#tb-stops")).to_contain_text("answers", timeout=30_000)
        expect(page.locator("#tb-stops")).to_contain_text("<|eot_id|>")
        streamed = watch_the_tuned_answer_grow(page)
        message = page.locator("#tb-try-message textarea")
        message.fill("こんにちは、日本の首都はどこですか?")
        message.press("Enter")
        tuned, base = page.locator("#tb-chat-tuned"), page.locator("#tb-chat-base")
        expect(tuned).to_contain_text("こんにちは、日本の首都はどこですか?", timeout=120_000)
        expect(page.locator("#tb-try-status")).to_contain_text("Base model:", timeout=120_000)
        assert page.evaluate(streamed) >= 2  # the answer arrived in pieces, not at once
        for box in (tuned, base):
            expect(box.locator(".message-row, [data-testid='bot']").last).not_to_be_empty()
        expect(page.locator("#tb-try-status")).to_contain_text("on cpu")
        shot(page, "walk-try-side-by-side")
        assert not loaded_a_model(home)


def watch_the_tuned_answer_grow(page: Page) -> str:
    """Count how many different lengths the tuned box's text goes through while an answer streams."""
    page.evaluate("""() => { window.tbLengths = new Set();
      new MutationObserver(() => window.tbLengths.add(document.querySelector('#tb-chat-tuned').innerText.length))
        .observe(document.querySelector('#tb-chat-tuned'), {subtree: true, childList: true, characterData: true}); }""")
    return "() => window.tbLengths.size"


def loaded_a_model(home: Path) -> bool:
    """Whether the app's own log shows model weights loading (the worker's go to its own log)."""
    logs = [p for p in home.parent.glob("try-app.log")]
    return any("Loading weights" in p.read_text(encoding="utf-8", errors="replace") for p in logs)
