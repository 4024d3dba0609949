"""Issue 8, walked as a new user does: the record preview, the step arithmetic, the template a model gets,
the Run and Runs sections. Debian's chromium against the real app, with a data directory of its own.

    .venv/bin/pytest tests/e2e/test_walk_runs.py -q    # ~3 min; screenshots in tests/.artifacts/screenshots/

One page walks in order (each test continues where the previous one left off): the Run section before any
run, the record slider, Llama 3.1's dated header, the arithmetic's rounding, two short runs started with
Start (the effective config appears while the first runs), both compared in Runs and one watched in Run, a
new model and its template, the system-turn and truncation notes, and the ETA of a run that slowed down.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from e2e.conftest import opened, running_app
from e2e.test_dashboard import open_tab, pick
from finetune import procs, runs

SLOW = 90_000  # ms: a model built on first use, a run on a busy 2-core machine
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    with running_app(tmp_path_factory, "walk-runs") as (url, home):
        yield url, home


@pytest.fixture(scope="module")
def home(app) -> Path:
    return app[1]


@pytest.fixture(scope="module")
def page(browser, app):
    with opened(browser, app[0], timeout=SLOW) as page:
        yield page


def field(page: Page, label: str, value: str) -> None:
    """Type ``value`` into the field labelled ``label`` and press Enter, as a person commits a number."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def run_ids(home: Path) -> list[str]:
    """Run ids, oldest first."""
    return [r.id for r in reversed(runs.list_runs(runs.runs_root(home)))]


def test_before_any_run_the_run_section_says_there_is_none(page: Page, shot) -> None:  # item 15
    open_tab(page, "run")
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text("No run yet")
    expect(progress).not_to_contain_text(re.compile("unknown|step 0/", re.I))
    shot(page, "walk-15-no-run-yet")


def test_the_record_slider_counts_from_one_and_takes_enter(page: Page, shot) -> None:  # item 9
    open_tab(page, "model")
    stats = page.locator("#tb-render-stats")
    expect(stats).to_contain_text("record 1 of 300")
    number = page.get_by_label("number input for Record")
    expect(number).to_have_value("1")
    assert number.get_attribute("min") == "1" and number.get_attribute("max") == "300"
    number.fill("12")
    number.press("Enter")
    expect(stats).to_contain_text("record 12 of 300")
    expect(number).to_have_value("12")
    shot(page, "walk-09-record-12-of-300")


def test_llama_31s_dated_header_is_explained_next_to_the_record(page: Page, shot) -> None:  # item 11
    expect(page.locator("#tb-rendered")).to_contain_text("Today·Date:·26·Jul·2024")  # spaces shown as ·
    note = page.locator("#tb-render-stats .tb-notes")
    expect(note).to_contain_text("Cutting Knowledge Date: December 2023 / Today Date: 26 Jul 2024")
    expect(note).to_contain_text("official llama3.1 template writes this system header itself")
    expect(note).to_contain_text("pick another template")
    shot(page, "walk-11-llama-date-header")


def test_the_step_arithmetic_shows_where_it_rounds_up(page: Page, shot) -> None:  # item 10
    open_tab(page, "dataset")
    field(page, "Use only the first N records", "120")
    expect(page.get_by_text("120 training records")).to_be_visible()
    open_tab(page, "hparams")
    for label, value in (("Batch size", "7"), ("Gradient accumulation", "4"), ("Epochs", "2.5")):
        box = page.get_by_role("spinbutton", name=label)
        box.fill(value)
        box.press("Tab")
    explain = page.locator("#tb-steps-explain")
    expect(explain).to_contain_text("120 records / batch 7 = 17.14, rounded up: 18 micro-batches per epoch")
    expect(explain).to_contain_text("18 / 4 = 4.5, rounded up: 5 updates per epoch")
    expect(explain).to_contain_text("× 2.5 epochs = 12.5, rounded up: 13 optimizer steps")
    expect(explain).to_contain_text("48 micro-batches")  # 2 whole epochs + 3 updates of the third
    shot(page, "walk-10-steps-rounding")
    reset(page)


def reset(page: Page) -> None:
    page.locator("#tb-reset").click()
    open_tab(page, "dataset")
    expect(page.get_by_text("300 training records")).to_be_visible()


def test_the_effective_config_appears_while_the_run_goes(page: Page, shot, home: Path) -> None:  # item 15
    open_tab(page, "hparams")
    field(page, "Max steps", "12")
    expect(page.locator("#tb-steps-explain")).to_contain_text("max_steps 12")
    open_tab(page, "run")
    page.locator("#tb-config-accordion").click()
    page.locator("#tb-start").click()
    # Start answers before the run's pre-run check; the panel must fill in once the run has written it.
    expect(page.locator("#tb-effective")).to_contain_text("max_steps: 12", timeout=SLOW)
    run_id = run_ids(home)[-1]
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("finished", re.I), timeout=SLOW)
    expect(page.locator("#tb-config-accordion")).to_contain_text(run_id)
    shot(page, "walk-15-effective-config")


def test_two_runs_compared_draw_a_line_each_named_in_full(page: Page, shot, home: Path) -> None:  # item 2
    open_tab(page, "hparams")
    lr = page.get_by_label("Learning rate", exact=True)
    lr.fill("0.0005")
    lr.press("Tab")
    open_tab(page, "run")
    (first,) = run_ids(home)
    page.locator("#tb-start").click()
    expect(page.get_by_label("Run", exact=True)).not_to_have_value(first, timeout=SLOW)
    expect(page.locator("#tb-progress")).to_contain_text("step 12/12", timeout=SLOW)
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("finished", re.I), timeout=SLOW)
    first, second = run_ids(home)
    open_tab(page, "runs")
    table = page.locator("#tb-runs-table")
    expect(table).to_contain_text(second)
    table.get_by_test_id("cell-1-0").click()  # the older run first: it is the one "Watch in Run" opens
    expect(page.locator("#tb-runs-legend")).to_contain_text(first)
    table.get_by_test_id("cell-0-0").click()
    legend = page.locator("#tb-runs-legend")
    expect(legend).to_contain_text(first)
    expect(legend).to_contain_text(second)  # each name whole: the plot's own legend cut them at 25 characters
    lines = page.locator("#tb-runs-plot g.mark-line path")
    expect(lines).to_have_count(2)
    for i in range(2):  # a line the plot draws has a colour; one outside its colour scale has none
        expect(lines.nth(i)).to_have_attribute("stroke", re.compile("^#"))
    assert len({lines.nth(i).get_attribute("stroke") for i in range(2)}) == 2  # two runs, two colours
    shot(page, "walk-02-two-runs-compared")


def test_watch_in_run_shows_that_runs_config(page: Page, shot, home: Path) -> None:  # item 3
    first, second = run_ids(home)
    page.get_by_role("button", name="Watch in Run").click()
    expect(page.get_by_label("Run", exact=True)).to_have_value(first)
    accordion = page.locator("#tb-config-accordion")
    expect(accordion).to_contain_text(f"Run {first}")
    cli = page.locator("#tb-cli input, #tb-cli textarea").first
    expect(cli).to_have_value(re.compile(re.escape(first)))
    expect(page.locator("#tb-effective")).to_contain_text("learning_rate: 0.003")  # the first run's rate
    assert second not in accordion.inner_text()
    shot(page, "walk-03-watch-in-run")


def test_a_new_model_gets_its_familys_template_and_says_so(page: Page, shot) -> None:  # item 5
    reset(page)
    open_tab(page, "model")
    pick(page, "Model", "builtin:tiny-gemma")
    expect(page.get_by_label("Template", exact=True)).to_have_value("gemma2 — Gemma 2 instruct")
    expect(page.locator("#tb-template-note")).to_contain_text("changed from 'llama3.1' to 'gemma2'")
    expect(page.locator("#tb-model-info")).to_contain_text("gemma2", timeout=SLOW)
    expect(page.locator("#tb-rendered")).to_contain_text("<start_of_turn>", timeout=SLOW)
    warnings = page.locator("#tb-template-warnings")
    expect(warnings).not_to_contain_text("tuned with")  # nothing contradicts the dropdown any more
    shot(page, "walk-05-model-switch-template")


def test_the_system_turn_note_says_where_the_text_goes_in_both_languages(page: Page, shot) -> None:  # 12
    prompt = page.get_by_role("textbox", name="System prompt")
    prompt.fill("あなたは丁寧なサポート担当です。")
    prompt.press("Tab")
    warnings = page.locator("#tb-template-warnings")
    expect(warnings).to_contain_text("merged into the first user turn (system text, a blank line, the user")
    page.get_by_label("日本語").check()
    expect(warnings).to_contain_text("システムメッセージは最初のユーザー発話の先頭に入ります")
    expect(warnings).to_contain_text("システムの文、空行、ユーザーの文の順")
    shot(page, "walk-12-system-turn-ja")
    page.get_by_label("English").check()
    expect(page.locator("#tb-tab-model-button")).to_contain_text("Model & prompt format")


def test_truncation_says_what_it_does_and_offers_the_fix(page: Page, shot) -> None:  # item 12
    reset(page)
    expect(page.locator("#tb-template-note")).not_to_contain_text("The model is now")  # back on Llama
    field(page, "max_length (tokens)", "90")
    said = re.compile(r"(\d+) of 300 records are longer than max_length \(90; the longest has (\d+) tokens\)")
    histogram = page.locator("#tb-histogram")
    expect(histogram).to_contain_text(said)
    expect(histogram).to_contain_text("end-of-turn token, so the model learns replies that never stop")
    section1 = said.search(histogram.inner_text()).groups()
    shot(page, "walk-12-truncation-dataset")
    open_tab(page, "model")
    warnings = page.locator("#tb-template-warnings")
    expect(warnings).to_contain_text(said)
    assert said.search(warnings.inner_text()).groups() == section1  # the same counts in both sections
    expect(warnings).to_contain_text("or remove the long records from the data")
    shot(page, "walk-12-truncation-model")
    page.get_by_role("button", name=re.compile(r"Raise max_length to \d+")).click()
    open_tab(page, "dataset")
    expect(histogram).to_contain_text("No record is longer than max_length")


@pytest.fixture
def slowed_run(home: Path):
    """A live run (a real process stands in for the trainer) whose steps went from 0.25 s to 8 s each."""
    sleeper = subprocess.Popen(["sleep", "600"])
    run_id = "20990101-000000-sft-slowed"
    run_dir = runs.runs_root(home) / run_id
    run_dir.mkdir(parents=True)
    now = datetime.now(UTC)
    elapsed, rows = 5.0, []
    for step in range(2, 42, 2):
        elapsed += 2 * (0.25 if step <= 20 else 8.0)
        rows.append({"step": step, "loss": 3.0 - step / 50, "elapsed": elapsed})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run_dir / "config.yaml").write_text("task: sft\n", encoding="utf-8")
    started = (now - timedelta(seconds=elapsed + 6)).isoformat(timespec="seconds")
    status = {
        "state": "running", "run_id": run_id, **procs.identity(sleeper.pid), "started_at": started,
        "attempt_started_at": started, "attempt": 1, "step": 40, "max_steps": 100,
        "updated_at": now.isoformat(timespec="seconds"),
    }  # fmt: skip
    (run_dir / "status.json").write_text(json.dumps(status), encoding="utf-8")
    try:
        yield run_id
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_eta_follows_the_recent_pace_and_says_it_is_approximate(page: Page, shot, slowed_run) -> None:
    # item 14: 60 steps left at the last 10 logged steps' 8 s a step is ~8:00 (less the seconds since that
    # step was logged), not the ~4:30 and growing that the average since the start gives.
    open_tab(page, "run")
    pick(page, "Run", slowed_run)
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text("step 40/100")
    expect(progress).to_contain_text(re.compile(r"about \d+:\d\d left \(at the recent pace\)"))
    minutes, seconds = re.search(r"about (\d+):(\d\d) left", progress.inner_text()).groups()
    assert 400 <= int(minutes) * 60 + int(seconds) <= 480
    shot(page, "walk-14-eta")
