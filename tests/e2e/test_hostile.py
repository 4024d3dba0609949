"""A signed-in visitor who means harm, in a real browser against the real app: what the probe did, refused.

    .venv/bin/pytest tests/e2e/test_hostile.py -q      # ~1 min

The app runs with a login (so others can reach it) and a Hugging Face token in its environment. The visitor
types /proc/self/environ as the data path, and pastes chat templates that used to stall the whole server (a
giant ``**``, a constant folded while compiling, loops with no end); meanwhile a second client asks for
``/config`` every tenth of a second, and must always get it within 2 s.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import ConfigWatch, running_app
from e2e.test_dashboard import open_tab, pick

PASSWORD = "tuneboard-hostile-test"
TOKEN = "hf_e2e_secret_never_shown"
HOSTILE = {
    "power": "{% set a = 9 %}{{ (a ** (9 ** 8)) % 10 }}{% generation %}x{% endgeneration %}",
    "folded": "{{ (9 ** (9 ** 7)) % 10 }}{% generation %}x{% endgeneration %}",
    "loops": "{% generation %}x{% endgeneration %}"
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
}
SAYS = {
    "power": "is too large a number",
    "folded": "is too large a number",
    "loops": "took longer than",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    env = {"TUNEBOARD_AUTH": f"eve:{PASSWORD}", "HF_TOKEN": TOKEN}
    with running_app(tmp_path_factory, "hostile", **env) as (url, _):
        yield url


@pytest.fixture(scope="module")
def page(browser, app: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app)
    page.get_by_label("username").fill("eve")
    page.get_by_label("password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#tb-title")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("300 training records")).to_be_visible(timeout=60_000)
    yield page
    context.close()


def test_a_system_file_as_the_data_path_is_refused(page: Page) -> None:
    path = page.get_by_label("Data path or id")
    pick(page, "Format", "txt")
    path.fill("/proc/self/environ")
    path.press("Enter")
    expect(page.locator("#tb-banner")).to_contain_text("leads into /proc, /sys or /dev", timeout=30_000)
    for section in ("dataset", "model"):
        open_tab(page, section)
        body = page.locator("body").inner_text()
        assert TOKEN not in body and PASSWORD not in body
    open_tab(page, "dataset")
    path.fill("builtin:sample-chat")
    pick(page, "Format", "auto")
    path.press("Enter")
    expect(page.locator("#tb-banner")).to_be_empty(timeout=30_000)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_template_never_holds_up_another_browser(page: Page, app: str, kind: str) -> None:
    open_tab(page, "model")
    pick(page, "Template", "custom")
    editor = page.locator(".cm-content:visible").first
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(HOSTILE[kind])
    with ConfigWatch(app, login=("eve", PASSWORD)) as watch:
        page.locator("#tb-title").click()  # leaving the editor commits the template: the analysis starts
        expect(page.locator("#tb-banner")).to_contain_text(SAYS[kind], timeout=60_000)
        time.sleep(0.5)
    assert watch.answers > 3 and watch.slowest < 2.0, (watch.answers, watch.slowest)
