"""A new user brings their own data, in Debian's chromium against the real app (issue 8's walk, part 1).

    .venv/bin/pytest tests/e2e/test_walk_own_data.py -q      # ~2 min; screenshots in tests/.artifacts/

One page, in order: the bundled sentiment sample trains as classification from the demo's state (its token
kept for later, not in the way); a Japanese FAQ table with unrecognised columns opens the mapping, every role
at once, as a step to take rather than an error, shows its empty cells empty and drops the demo's token;
a token the data never holds is named by the scan; a ';'-separated export reads as two columns; a reload in
the middle of a run comes back to the same section, with the source picker agreeing with the path.
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from e2e.conftest import opened, running_app
from e2e.test_dashboard import open_tab, pick
from finetune import runs

expect.set_options(timeout=30_000)
FAQ = [
    ("配送にはどのくらいかかりますか?", "通常三日以内にお届けします。", "配送", ""),
    ("返品はできますか?", "到着から七日以内なら返品できます。", "返品", "未開封に限る"),
    ("支払い方法は?", "カードと銀行振込に対応しています。", "支払い", ""),
    ("領収書はもらえますか?", "購入履歴から発行できます。", "支払い", ""),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    with running_app(tmp_path_factory, "walk") as (url, home):
        yield url, home


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("walk-data")
    faq = folder / "よくある質問.csv"
    with faq.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["質問", "回答", "カテゴリ", "メモ"])
        writer.writerows(FAQ * 10)
    semicolons = folder / "export.csv"
    semicolons.write_text(
        'prompt;completion\nWie lange dauert der Versand?;Drei Tage.\n"Preis; netto?";"12,50 €"\n',
        encoding="utf-8-sig",
    )
    return {"faq": faq, "semicolons": semicolons}


@pytest.fixture(scope="module")
def page(browser, app):
    with opened(browser, app[0]) as page:
        yield page


def upload(page: Page, path: Path) -> None:
    page.get_by_label("Upload a file").check()
    page.locator("#tb-upload input[type=file]").set_input_files(str(path))
    expect(page.get_by_label("Data path or id")).to_have_value(re.compile(re.escape(path.name) + "$"))


def start_and_wait(page: Page, home: Path, state: str = "finished") -> Path:
    open_tab(page, "run")
    page.locator("#tb-start").click()
    expect(page.locator("#tb-progress")).to_contain_text(re.compile(state, re.I), timeout=180_000)
    return Path(runs.list_runs(runs.runs_root(home))[0].path)


def test_classification_starts_from_the_demo_state(page: Page, app, shot) -> None:
    """Item 1: the demo's token stays in the form, says it is not used, and does not block Start."""
    pick(page, "Sample", "sample-sentiment")
    expect(page.get_by_role("radio", name="classification")).to_be_checked()
    open_tab(page, "tokens")
    note = page.locator("#tb-tokens-note")
    expect(note).to_contain_text("adds no tokens")
    expect(note).to_contain_text("1 token(s) below are kept")
    expect(page.locator("#tb-tokens-table")).to_contain_text("<user_name>")
    page.locator("#tb-remove-pick input").click()
    expect(page.get_by_role("option", name="<user_name>")).to_be_visible()  # the remove list is filled
    page.keyboard.press("Escape")
    shot(page, "walk-1-classification-tokens")
    open_tab(page, "dataset")
    balance = page.locator("#tb-class-balance")  # issue 11: the label list and how many records each has
    expect(balance).to_contain_text("Class balance: 3 labels in 200 records")
    for label in ("negative", "neutral", "positive"):
        expect(balance).to_contain_text(label)
    run_dir = start_and_wait(page, app[1])
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["task"] == "classification" and "tokens" not in config and "template" not in config
    try_the_classifier(page, shot)
    open_tab(page, "dataset")
    pick(page, "Sample", "sample-chat")  # back to sft: the token is used again
    expect(page.get_by_role("radio", name="sft")).to_be_checked()
    open_tab(page, "tokens")
    expect(page.locator("#tb-tokens-note")).to_be_empty()
    open_tab(page, "dataset")


def try_the_classifier(page: Page, shot) -> None:
    """Issue 11 for classification: a typed text gets labels with probabilities; Evaluate shows accuracy,
    macro-F1 and the confusion matrix as a plot."""
    open_tab(page, "try")
    expect(page.locator("#tb-try-weights input")).to_have_value("final", timeout=30_000)
    message = page.locator("#tb-try-message textarea")
    message.fill("This game made my day.")
    message.press("Enter")
    labels = page.locator("#tb-try-labels")
    expect(labels).to_contain_text(re.compile("negative|neutral|positive"), timeout=120_000)
    expect(labels).to_contain_text("%")
    page.locator("#tb-evaluate").click()
    result = page.locator("#tb-eval-result")
    expect(result).to_contain_text(re.compile(r"accuracy \d\.\d{3} · macro-F1 \d\.\d{3}"), timeout=120_000)
    matrix = page.locator("#tb-confusion svg")
    expect(matrix).to_be_visible()
    assert matrix.locator("rect").count() == 9  # 3 true labels × 3 predicted
    shot(page, "walk-1-classification-evaluated")
    open_tab(page, "dataset")


def test_a_text_run_shows_its_sequences_trains_and_continues_a_text(page: Page, app, shot) -> None:
    """Issue 11, the text task through the page: the record as the model reads it (BOS, the EOS training
    appends, one record a row), a run, and the result continuing a typed text with no chat template."""
    pick(page, "Sample", "sample-text")
    expect(page.get_by_role("radio", name="text")).to_be_checked()
    open_tab(page, "model")
    warnings = page.locator("#tb-template-warnings")
    expect(warnings).to_contain_text("Task text uses no chat template")
    expect(warnings).to_contain_text("training ends each record with <|eot_id|>")  # the tiny model's EOS
    expect(warnings).to_contain_text("Each record is its own row")
    expect(page.locator("#tb-rendered")).to_contain_text("<|eot_id|>")  # the EOS, a token of the record
    shot(page, "walk-text-sequences")
    open_tab(page, "hparams")
    box = page.get_by_label("Max steps", exact=True)
    box.fill("8")
    box.press("Enter")
    expect(page.locator("#tb-steps-explain")).to_contain_text("max_steps 8")
    before = {r.id for r in runs.list_runs(runs.runs_root(app[1]))}
    open_tab(page, "run")
    page.locator("#tb-start").click()  # the Run section still says the classifier finished: wait on the run
    deadline = time.monotonic() + 180
    while (
        not (new := {r.id: r.state for r in runs.list_runs(runs.runs_root(app[1])) if r.id not in before})
        or "finished" not in new.values()
    ):
        assert time.monotonic() < deadline and "failed" not in new.values(), new
        time.sleep(0.5)
    (new,) = new
    open_tab(page, "try")
    box = page.locator("#tb-try-run input")  # still on the classifier picked before: pick the text run
    box.click()
    page.locator(f"#{box.get_attribute('aria-controls')}").get_by_role("option", name=new, exact=True).click()
    expect(box).to_have_value(new)
    page.locator("#tb-try-compare input").uncheck()  # the tuned model alone: a completion is enough here
    message = page.locator("#tb-try-message textarea")
    message.fill("The weather today")
    message.press("Enter")
    expect(page.locator("#tb-try-status")).to_contain_text("Tuned model:", timeout=120_000)
    expect(page.locator("#tb-chat-tuned")).to_contain_text("The weather today")
    shot(page, "walk-text-continued")
    page.locator("#tb-reset").click()  # back to the demo for the next walk
    open_tab(page, "dataset")
    expect(page.get_by_text("300 training records")).to_be_visible()


def test_unrecognised_columns_open_the_mapping_with_every_role(page: Page, files, shot) -> None:
    """Items 7 and 8: a step to take, every missing role at once, no red banner; empty cells empty."""
    upload(page, files["faq"])
    banner = page.locator("#tb-banner")
    expect(banner.locator(".tb-banner.todo")).to_contain_text("prompt column")
    expect(banner.locator(".tb-banner.todo")).to_contain_text("completion column")
    expect(banner.locator(".tb-banner.error")).to_have_count(0)
    preview = page.locator("#tb-preview")
    expect(preview).to_contain_text("未開封に限る")
    expect(preview).not_to_contain_text("null")
    shot(page, "walk-2-mapping-to-do")
    pick(page, "prompt column", "質問")
    pick(page, "completion column", "回答")
    expect(page.get_by_text("40 training records")).to_be_visible()
    expect(banner).to_be_empty()


def test_own_data_drops_the_demo_token_and_the_scan_names_unused_ones(page: Page, shot) -> None:
    """Item 4: the demo's <user_name> goes with the demo data; a token the data lacks is named."""
    expect(page.locator("#tb-source-note")).to_contain_text("<user_name>")
    open_tab(page, "tokens")
    expect(page.locator("#tb-tokens-table")).not_to_contain_text("<user_name>")
    page.locator("#tb-new-token input, #tb-new-token textarea").first.fill("<会員番号>")
    page.get_by_role("button", name="Add token", exact=True).click()
    expect(page.locator("#tb-tokens-table")).to_contain_text("<会員番号>")
    page.get_by_role("button", name="Scan the data for token-like strings").click()
    expect(page.locator("#tb-scan")).to_contain_text("<会員番号>")
    expect(page.locator("#tb-scan")).to_contain_text("in none of the first")
    shot(page, "walk-3-unused-token")
    page.locator("#tb-new-token input, #tb-new-token textarea").first.fill("<会員番号>")
    page.get_by_role("button", name="Remove", exact=True).click()  # the typed name is enough
    expect(page.locator("#tb-tokens-table")).not_to_contain_text("<会員番号>")
    open_tab(page, "dataset")


def test_reload_mid_run_comes_back_to_the_same_place(page: Page, app, files, shot) -> None:
    """Item 6: the section on screen and the source picker survive a reload."""
    start_and_wait(page, app[1], state="running|finished")
    page.reload()
    expect(page.locator("#tb-start")).to_be_visible(timeout=60_000)  # still the Run section
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("running|finished", re.I))
    shot(page, "walk-4-reloaded-in-run")
    open_tab(page, "dataset")
    expect(page.get_by_label("Upload a file")).to_be_checked()
    expect(page.get_by_label("Data path or id")).to_have_value(re.compile(re.escape(files["faq"].name) + "$"))


def test_a_semicolon_export_reads_as_columns(page: Page, files, shot) -> None:
    """Item 17: a European Excel export (';') is split on its separator."""
    upload(page, files["semicolons"])
    expect(page.get_by_text("2 training records")).to_be_visible()
    expect(page.locator("#tb-preview")).to_contain_text("12,50 €")
    expect(page.locator("#tb-banner")).to_be_empty()
    shot(page, "walk-5-semicolons")
