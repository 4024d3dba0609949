"""Every section in Japanese, in Debian's chromium with an English browser: nothing a person reads is left in
English (issue 8, item 13).

    .venv/bin/pytest tests/e2e/test_walk_japanese.py -q      # ~1 min

The browser says en-US, so Gradio's own texts (the file drop zone, the footer) start in English; the
page's 日本語 switch must turn them, and everything of ours, into Japanese. The walk visits each section in
the states a new user sees (the demo, an upload, a scan, a preset, before and after a run, the runs list)
and collects the visible text, leaving out what is shown verbatim: logs, the rendered record, data
previews, code and config boxes, quoted template text. A run of two or more Latin-script words is a
sentence someone forgot to translate, unless it is a name below; chart titles and legends are checked word
by word, since one English word there is a label too.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import opened, running_app

VERBATIM = [  # shown as they are: logs, data, the record as the model sees it, code and configs
    "#tb-log", "#tb-runs-log", "#tb-rendered", "#tb-preview", "#tb-runs-table", "#tb-tokens-table",
    ".cm-editor", "#tb-cli", "#tb-sample-text", "#tb-pieces-before", "#tb-pieces-after", "#tb-scan code",
    "#tb-queue", "#tb-title", "#tb-lang", ".tb-duration code",
]  # fmt: skip
NAMES = {"Hugging Face", "Hugging Face Hub", "LoRA alpha"}
QUOTED = re.compile(r"「[^」]*」")  # what a template or the data writes, quoted as it is
METRICS = {"loss", "eval loss", "learning rate", "grad norm", "tokens/s", "learning_rate", "grad_norm"}
SENTENCE = re.compile(r"[A-Za-z][A-Za-z'’]+(?:[ \u00a0]+[A-Za-z][A-Za-z'’]+)+")
VISIBLE_TEXT = """(skip) => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || skip.some((s) => el.closest(s)) || !el.checkVisibility()) continue;
    if (el.closest("svg")) continue;  // charts: checked on their own
    out.push(walker.currentNode.textContent);
  }
  return out.join("\\n");
}"""
CHART_TEXT = """() => [...document.querySelectorAll(
  "svg .role-axis-title text, svg .role-legend-title text, svg .role-legend-label text, svg .role-title text"
)].filter((el) => el.checkVisibility()).map((el) => el.textContent)"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory):
    with running_app(tmp_path_factory, "ja") as (url, _):
        yield url


@contextmanager
def in_japanese(browser, url: str) -> Iterator[Page]:
    with opened(browser, url) as page:
        page.get_by_label("日本語").check()
        expect(page.locator("#tb-tab-dataset-button")).to_contain_text("データセット", timeout=30_000)
        yield page


@pytest.fixture(scope="module")
def page(browser, url: str):
    with in_japanese(browser, url) as page:
        yield page


def english_in(page: Page) -> list[str]:
    """The English sentences and chart labels on screen now (names and metric names allowed)."""
    page.wait_for_timeout(800)  # let the last update draw
    text = QUOTED.sub("", page.evaluate(VISIBLE_TEXT, VERBATIM))
    found = [m for m in SENTENCE.findall(text) if m not in NAMES]
    labels = [t for t in page.evaluate(CHART_TEXT) if re.fullmatch(r"[A-Za-z ]+", t or "")]
    return found + [f"chart: {t}" for t in labels if t.strip() and t not in METRICS]


def faq_table(folder: Path, records: int = 30) -> Path:
    faq = folder / "faq.csv"
    with faq.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "answer"])
        writer.writerows([[f"質問 {i} です", f"回答 {i} です"] for i in range(records)])
    return faq


def test_every_section_reads_in_japanese(page: Page, tmp_path: Path, shot) -> None:
    faq = faq_table(tmp_path)
    seen: dict[str, list[str]] = {}

    def look(where: str) -> None:
        seen[where] = english_in(page)

    look("dataset")
    page.get_by_label("ファイルをアップロード").check()
    expect(page.locator("#tb-upload")).to_contain_text("ファイルをここにドロップ")  # Gradio's own text
    look("dataset, upload")
    page.locator("#tb-upload input[type=file]").set_input_files(str(faq))
    expect(page.get_by_text("学習レコード")).to_contain_text("30")
    look("dataset, uploaded")
    for section in ("model", "tokens", "hparams", "run"):
        page.locator(f"#tb-tab-{section}-button").click()
        look(section)
    page.locator("#tb-tab-tokens-button").click()
    page.get_by_role("button", name="データ中のトークンらしい文字列を探す").click()
    expect(page.locator("#tb-scan")).not_to_be_empty()
    look("tokens, scanned")
    page.locator("#tb-tab-hparams-button").click()
    page.locator(".tb-preset").first.click()
    look("hparams, preset")
    page.locator("#tb-tab-run-button").click()
    page.locator("#tb-start").click()
    expect(page.locator("#tb-progress")).to_contain_text("完了", timeout=180_000)
    look("run, finished")
    page.locator("#tb-tab-runs-button").click()
    page.locator("#tb-runs-open input").click()
    page.get_by_role("option").first.click()
    page.keyboard.press("Escape")
    expect(page.locator("#tb-runs-plot svg").first).to_be_visible()
    look("runs, one open")
    expect(page.locator("footer")).to_contain_text("Gradioで作成")
    shot(page, "walk-13-japanese-runs")
    assert {where: found for where, found in seen.items() if found} == {}


STATUS_TEXTS = """() => { window.tbStatusTexts = [];
  new MutationObserver((changes) => { for (const change of changes) {
    const el = change.type === "characterData" ? change.target.parentElement : change.target;
    const where = el?.closest?.('[data-testid="status-tracker"], [role="status"]');
    if (where) window.tbStatusTexts.push(where.textContent.trim());
  } }).observe(document.body, { subtree: true, childList: true, characterData: true }); }"""


def test_gradio_queue_and_progress_words_in_japanese(browser, url: str, tmp_path: Path) -> None:
    """Two people upload a 1,000-record table at once: the second waits in Gradio's queue. Gradio's queue
    and progress words (the overlay's "queue: 1/1 |", "processing |", the announced "In queue: 1 of 1",
    "Complete") are Japanese on both pages (locales/gradio.yaml, locale.js)."""
    faq = faq_table(tmp_path, records=1000)
    with in_japanese(browser, url) as first, in_japanese(browser, url) as second:
        for person in (first, second):
            person.evaluate(STATUS_TEXTS)
            person.get_by_label("ファイルをアップロード").check()
        for person in (first, second):
            person.locator("#tb-upload input[type=file]").set_input_files(str(faq))
        for person in (first, second):
            expect(person.get_by_text("学習レコード")).to_contain_text("1000", timeout=120_000)
            expect(person.locator("#tb-upload-refused")).to_be_hidden()  # the same bytes: one cached path
        texts = {text for person in (first, second) for text in person.evaluate("window.tbStatusTexts")}
    assert any(text.startswith("待ち:") for text in texts), texts  # someone did wait in the queue
    assert any(text.startswith("処理中 |") for text in texts), texts
    assert [text for text in texts if re.search(r"[A-Za-z]{2,}", text)] == []


def test_the_drop_zone_on_screen_follows_a_language_switch(browser, url: str, tmp_path: Path) -> None:
    """Gradio draws the drop zone's own texts once: on screen during a switch, it is drawn again in the
    new language (and back), and a file dropped after the switch loads."""
    with opened(browser, url) as page:
        page.get_by_label("Upload a file").check()
        zone = page.locator("#tb-upload")
        expect(zone).to_contain_text("Drop File Here")
        for label, text in (("日本語", "ファイルをここにドロップ"), ("English", "Drop File Here")):
            # Gradio's texts switch at once; the zone is redrawn after: a file set before would be dropped.
            drawn = zone.locator("input[type=file]").element_handle()
            page.get_by_label(label).check()
            page.wait_for_function("(input) => !input.isConnected", arg=drawn, timeout=30_000)
            expect(zone).to_contain_text(text, timeout=30_000)
        zone.locator("input[type=file]").set_input_files(str(faq_table(tmp_path)))
        expect(page.get_by_text("30 training records")).to_be_visible()


def test_learning_rate_and_accumulation_explained_with_the_current_numbers(page: Page, shot) -> None:
    """Issue 9: each hyperparameter has a folded plain-words explanation (finetune/explain/ja.yaml) under it;
    the effective-batch arithmetic follows the numbers in the form."""
    page.locator("#tb-tab-hparams-button").click()
    for label, value in (("バッチサイズ", "2"), ("勾配の累積", "4")):
        box = page.get_by_role("spinbutton", name=label)
        box.fill(value)
        box.press("Tab")
    rate = page.locator(".tb-explained", has=page.get_by_role("spinbutton", name="学習率")).locator("details")
    rate.locator("summary").click()
    expect(rate).to_contain_text("大きすぎると")
    expect(rate).to_contain_text("LoRA")
    accumulation = page.locator(".tb-explained", has=page.get_by_role("spinbutton", name="勾配の累積"))
    accumulation.locator("summary").click()
    expect(accumulation.locator("details")).to_contain_text(
        "実効バッチ = 2 × 4 × 1 デバイス = 最適化ステップ 1 回あたり 8 レコード"
    )
    shot(page, "issue9-explained-ja")
    page.get_by_role("spinbutton", name="勾配の累積").fill("8")
    page.get_by_role("spinbutton", name="勾配の累積").press("Tab")
    expect(accumulation.locator("details")).to_contain_text(
        "2 × 8 × 1 デバイス = 最適化ステップ 1 回あたり 16"
    )
    page.locator("#tb-glossary").get_by_text("用語集").click()
    expect(page.locator("#tb-glossary")).to_contain_text("エポック")
