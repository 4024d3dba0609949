"""The dashboard as a new user drives it, in Debian's chromium against the real app on localhost.

    .venv/bin/pytest tests/e2e -q       # ~3 min; screenshots in tests/.artifacts/screenshots/

One page walks the whole flow in order (each test continues where the previous one left off): upload a CSV
of Japanese text, map its columns, pick a template and read the rendered record, add a token and see it
tokenize as one piece, change epochs and see the step count change, Start, watch the loss plot fill,
reload mid-run (and open a second browser) and see it still streaming, Stop, find the run in the list,
open TensorBoard in the page, switch to Japanese. Assertions retry (playwright ``expect``), so a slow
2-core machine only makes them wait.
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from finetune import presets, runs

SLOW = 60_000  # ms: the longest any single expectation may wait (model build, first analysis)
expect.set_options(timeout=20_000)  # a busy 2-core machine: every check retries up to 20 s
TOKEN = "<顧客名>"
QUESTIONS = [
    "注文した商品はいつ届きますか?",
    "返品はできますか?",
    "支払い方法を変えたいです。",
    "領収書はもらえますか?",
    "会員登録の方法を教えてください。",
    "パスワードを忘れました。",
    "配送先を変更できますか?",
    "ポイントの有効期限は?",
    "在庫はありますか?",
    "キャンセルしたいです。",
]
ANSWERS = [
    "{t}様、ご注文の商品は三日以内に届きます。",
    "{t}様、到着から七日以内なら返品できます。",
    "{t}様、マイページから支払い方法を変更できます。",
    "{t}様、領収書は購入履歴から発行できます。",
    "{t}様、トップページの「会員登録」からどうぞ。",
    "{t}様、ログイン画面の「パスワードを忘れた」から再設定できます。",
    "{t}様、発送前であれば変更できます。",
    "{t}様、ポイントの有効期限は一年です。",
    "{t}様、在庫は商品ページに表示しています。",
    "{t}様、発送前であればキャンセルできます。",
]


@pytest.fixture(scope="module")
def japanese_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 support Q&A pairs in Japanese; the column names are Japanese too, so nothing is detected."""
    path = tmp_path_factory.mktemp("data") / "サポート問答.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["質問", "回答"])
        for i in range(40):
            writer.writerow([f"{TOKEN}です。{QUESTIONS[i % 10]}", ANSWERS[i % 10].format(t=TOKEN)])
    return path


@pytest.fixture(scope="module")
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(SLOW)
    page.goto(app_url)
    yield page
    context.close()


def open_tab(page: Page, name: str) -> None:
    page.locator(f"#tb-tab-{name}-button").click()


def pick(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the gradio dropdown labelled ``label``."""
    box = page.get_by_label(label, exact=True)
    box.click()
    options = (
        page.locator(f"#{box.get_attribute('aria-controls')}") if box.get_attribute("aria-controls") else page
    )
    options.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)


def steps_shown(page: Page) -> int:
    text = page.locator("#tb-steps-explain").inner_text()
    return int(re.search(r"([\d,]+) optimizer steps", text).group(1).replace(",", ""))


def newest_run(home: Path) -> Path:
    return Path(runs.list_runs(runs.runs_root(home))[0].path)


def test_opens_ready_to_train_the_demo(page: Page, shot) -> None:
    expect(page.locator("#tb-title")).to_contain_text("Tuneboard")
    expect(page.get_by_text("300 training records")).to_be_visible()
    expect(page.locator("#tb-histogram svg")).to_be_visible()
    expect(page.locator("#tb-histogram")).to_contain_text("max_length 256")
    expect(page.locator("#tb-banner")).to_be_empty()
    expect(page.locator("#tb-ephemeral")).to_have_count(0)  # not a Space: the data directory is the user's
    expect(page.locator("#tb-zero-gpu")).to_have_count(0)


def test_more_processes_show_the_accelerate_command_and_fewer_steps(page: Page, shot) -> None:
    """Issue 10: the Run section sets how many processes (GPUs) a run takes; before any run the config panel
    shows the exact launcher command the job will run, and the step arithmetic counts every process."""
    open_tab(page, "hparams")
    before = steps_shown(page)
    open_tab(page, "run")
    expect(page.locator("#tb-machine")).to_contain_text("This machine: no GPU")
    processes = page.get_by_role("spinbutton", name="Processes (GPUs)")
    processes.fill("2")
    processes.press("Enter")
    page.locator("#tb-config-accordion").click()
    cli = page.locator("#tb-cli input, #tb-cli textarea").first
    expect(cli).to_have_value(
        "python -m accelerate.commands.launch --config_file presets/launch/ddp.yaml --num_processes 2 "
        "--num_machines 1 --machine_rank 0 --main_process_port 29500 -m finetune train config.yaml"
    )
    open_tab(page, "hparams")
    expect(page.locator("#tb-steps-explain")).to_contain_text("300 records / batch (8 × 2 processes) = 18.75")
    assert steps_shown(page) == -(-before // 2)  # each step takes a batch on every process
    open_tab(page, "run")
    page.get_by_label("Strategy").click()
    page.get_by_role("option", name="fsdp", exact=True).click()
    expect(page.locator("#tb-banner")).to_contain_text("needs CUDA")  # refused before Start, named
    shot(page, "issue10-two-processes")
    page.get_by_label("Strategy").click()
    page.get_by_role("option", name="ddp", exact=True).click()
    processes.fill("1")
    processes.press("Enter")
    expect(cli).to_have_value("python -m finetune train config.yaml")
    page.locator("#tb-config-accordion").click()  # folded again, as the next tests expect
    expect(page.locator("#tb-banner")).to_be_empty()


def test_start_on_the_defaults_finishes_on_a_cpu(page: Page, shot, app_home: Path) -> None:
    open_tab(page, "run")
    page.locator("#tb-start").click()
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("finished", re.I), timeout=180_000)
    expect(page.locator("#tb-progress")).to_contain_text("step 114/114")
    run_dir = newest_run(app_home)
    assert runs.read_status(run_dir)["state"] == "finished" and (run_dir / "final").is_dir()
    open_tab(page, "dataset")


def test_try_the_demo_beside_its_base_and_see_whether_it_stops(page: Page, shot, app_home: Path) -> None:
    """Issue 11, section 7: the demo run just trained answers a Japanese message, streamed, and its base
    model answers beside it; the run's stop figure is shown. The models live in the inference worker
    (finetune/worker.py): the dashboard's own log shows no model loading."""
    open_tab(page, "try")
    expect(page.locator("#tb-try-weights input")).to_have_value("final", timeout=30_000)
    expect(page.locator("#tb-stops")).to_contain_text("of 32 answers", timeout=30_000)
    expect(page.locator("#tb-stops")).to_contain_text("<|eot_id|>")
    page.evaluate("""() => { window.tbLengths = new Set();
      const box = document.querySelector('#tb-chat-tuned');
      new MutationObserver(() => window.tbLengths.add(box.innerText.length))
        .observe(box, {subtree: true, childList: true, characterData: true}); }""")
    message = page.locator("#tb-try-message textarea")
    message.fill("こんにちは、日本の首都はどこですか?")
    message.press("Enter")
    tuned, base = page.locator("#tb-chat-tuned"), page.locator("#tb-chat-base")
    expect(tuned).to_contain_text("こんにちは、日本の首都はどこですか?", timeout=120_000)
    expect(page.locator("#tb-try-status")).to_contain_text("Base model:", timeout=120_000)
    assert page.evaluate("() => window.tbLengths.size") >= 2  # the answer arrived in pieces, not at once
    expect(base).to_contain_text("こんにちは、日本の首都はどこですか?")
    expect(page.locator("#tb-try-status")).to_contain_text("on cpu")
    shot(page, "7-try-side-by-side")
    page.locator("#tb-evaluate").click()  # issue 11, Evaluate: in the worker, base vs tuned
    result = page.locator("#tb-eval-result")
    expect(result).to_contain_text("measured on 300 training records", timeout=120_000)
    expect(result).to_contain_text("perplexity")
    expect(result).to_contain_text("they flatter it")  # the demo has no validation split: labelled so
    expect(page.locator("#tb-hold-out")).to_be_visible()
    shot(page, "7-evaluate")
    page.locator("#tb-export").click()  # Take it away: a full fine-tune, exported as it is
    page.locator("#tb-export-go").click()
    expect(page.locator("#tb-exported")).to_contain_text("Written to", timeout=120_000)
    run_dir = runs.list_runs(runs.runs_root(app_home))[0].path
    assert (Path(run_dir) / "export" / "README.md").is_file()
    app_log = app_home.parent / "dashboard-app.log"  # app_url's: the dashboard's own output
    assert "Loading weights" not in app_log.read_text(errors="replace")
    open_tab(page, "runs")
    evaluated = re.compile(r"loss \d+\.\d{3} \(base \d+\.\d{3}\) \*")  # *: on training records
    expect(page.locator("#tb-runs-table")).to_contain_text(evaluated, timeout=30_000)
    open_tab(page, "dataset")


def test_upload_japanese_csv_and_map_columns(page: Page, shot, japanese_csv: Path) -> None:
    page.get_by_label("Upload a file").check()
    page.locator("#tb-upload input[type=file]").set_input_files(str(japanese_csv))
    expect(page.locator("#tb-preview")).to_contain_text("返品はできますか")
    expect(page.get_by_label("Data path or id")).to_have_value(re.compile(r"サポート問答\.csv$"))
    # Columns named 質問 / 回答 match no layout: the page asks for the mapping next to the field.
    expect(page.locator("#tb-banner")).to_contain_text("prompt column")
    pick(page, "prompt column", "質問")
    pick(page, "completion column", "回答")
    expect(page.get_by_text("40 training records")).to_be_visible()
    expect(page.locator("#tb-banner")).to_be_empty()
    expect(page.locator("#tb-histogram")).to_contain_text("40 records")
    shot(page, "1-dataset")


def test_pick_template_and_see_the_rendered_record(page: Page, shot) -> None:
    open_tab(page, "model")
    expect(page.locator("#tb-rendered")).to_contain_text("注文した商品はいつ届きますか")
    pick(page, "Template", f"chatml — {presets.load('templates', 'chatml')['name']}")
    warnings = page.locator("#tb-template-warnings")
    expect(warnings).to_contain_text("tuned with 'llama3.1'")  # instruct model, other format picked
    expect(warnings).to_contain_text("<|im_start|>")  # the template writes tokens this vocabulary lacks
    page.get_by_role("button", name=re.compile(r"Add 2 missing token")).click()
    expect(warnings).not_to_contain_text("vocabulary lacks")
    rendered = page.locator("#tb-rendered")
    expect(rendered.locator(".tb-tok.special", has_text="<|im_start|>").first).to_be_visible()
    expect(rendered.locator(".tb-tok.loss").first).to_be_visible()  # the reply carries the loss
    expect(rendered).to_contain_text("様")
    shot(page, "2-model-and-template")


def test_add_a_token_and_see_it_as_one_piece(page: Page, shot) -> None:
    open_tab(page, "tokens")
    sample = page.locator("#tb-sample-text textarea")
    sample.fill(f"{TOKEN}様、ご注文ありがとうございます。")
    before = page.locator("#tb-pieces-before .tb-tok")
    expect(before.first).to_be_visible()
    assert not [t for t in before.all_inner_texts() if t == TOKEN]  # split before the edit
    page.locator("#tb-new-token input, #tb-new-token textarea").first.fill(TOKEN)
    page.get_by_role("button", name="Add token", exact=True).click()
    expect(page.locator("#tb-tokens-table")).to_contain_text(TOKEN)
    expect(page.locator("#tb-pieces-after .tb-tok.special", has_text=TOKEN)).to_have_count(1)
    expect(
        page.locator("#tb-pieces-after .tb-tok").filter(has_text=re.compile(f"^{re.escape(TOKEN)}$"))
    ).to_have_count(1)
    page.get_by_role("button", name="Scan the data for token-like strings").click()
    expect(page.locator("#tb-scan")).to_contain_text(TOKEN)
    expect(page.locator("#tb-scan")).to_contain_text("one token already")
    shot(page, "3-tokens")


def test_change_epochs_and_see_the_steps_change(page: Page, shot) -> None:
    open_tab(page, "hparams")
    expect(page.locator("#tb-steps-explain")).to_contain_text("40 records")
    before = steps_shown(page)
    batch = page.get_by_role("spinbutton", name="Batch size")
    batch.fill("2")
    batch.press("Tab")
    epochs = page.get_by_role("spinbutton", name="Epochs")
    epochs.fill("100")
    epochs.press("Tab")
    page.get_by_label("Save checkpoints", exact=True).click()
    page.get_by_role("option", name="no", exact=True).click()
    expect(page.locator("#tb-steps-explain")).to_contain_text("× 100 epochs")
    expect(page.locator("#tb-steps-explain")).to_contain_text("2,000 optimizer steps")
    assert steps_shown(page) == 2000 != before
    # Longer, so the run is still going when a later test stops it, however fast this machine trains it.
    steps = page.get_by_label("Max steps", exact=True)
    steps.fill("20000")
    steps.press("Tab")
    expect(page.locator("#tb-steps-explain")).to_contain_text("max_steps 20000")
    assert steps_shown(page) == 20_000
    expect(page.locator("#tb-schedule svg")).to_be_visible()
    shot(page, "4-hyperparameters")


def test_start_and_watch_the_loss_plot_fill(page: Page, shot, app_home: Path) -> None:
    open_tab(page, "run")
    page.locator("#tb-start").click()
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text(re.compile("running", re.I), timeout=90_000)
    line = page.locator("#tb-loss-plot g.mark-line path")
    expect(line.first).to_be_attached(timeout=90_000)
    first = line.first.get_attribute("d") or ""
    expect(page.locator("#tb-log")).to_contain_text(re.compile(r"step \d+/20000"))
    # The run is still going, and the plot grows: more points at the next redraw (run_tab.PLOT_EVERY).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (line.first.get_attribute("d") or "") == first:
        time.sleep(0.5)
    assert (line.first.get_attribute("d") or "") != first, "the loss plot did not receive new points"
    expect(progress).to_contain_text(re.compile("running", re.I))
    run_dir = newest_run(app_home)
    config = (run_dir / "config.yaml").read_text(encoding="utf-8")
    assert "質問" in config and TOKEN in config and "chatml" in config
    shot(page, "5-run-live")


def test_metrics_reach_the_page_within_two_seconds(page: Page, app_home: Path) -> None:
    run_dir = newest_run(app_home)
    for _ in range(3):
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
        step = status["step"]
        expect(page.locator("#tb-progress")).to_contain_text(re.compile(r"step (\d+)/20000"), timeout=2000)
        shown = int(re.search(r"step (\d+)/", page.locator("#tb-progress").inner_text()).group(1))
        assert shown >= step or _within(page, step, 2.0)


def test_a_training_run_streams_without_a_gradio_event_a_second(page: Page, app_home: Path) -> None:
    # Each Gradio event costs the browser a walk over every component (finetune/ui/live.py): the progress
    # line and the log follow the run through /tb-live, and Gradio redraws only the plots, every 10 s.
    joins: list[str] = []
    lines: list[str] = []

    def seen(request) -> None:
        if "/gradio_api/queue/join" in request.url:
            joins.append(request.url)
        elif "/tb-live/" in request.url:
            lines.append(request.url)

    log = page.locator("#tb-log pre")
    before_log, before = log.inner_text(), page.locator("#tb-progress").inner_text()
    page.on("request", seen)
    page.wait_for_timeout(6000)  # not time.sleep: playwright delivers the page's events while it waits
    page.remove_listener("request", seen)
    assert json.loads((newest_run(app_home) / "status.json").read_text())["state"] == "running"
    assert len(lines) >= 4 and len(joins) <= 1, (len(lines), joins)
    assert page.locator("#tb-progress").inner_text() != before and log.inner_text() != before_log


def _within(page: Page, step: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shown = int(re.search(r"step (\d+)/", page.locator("#tb-progress").inner_text()).group(1))
        if shown >= step:
            return True
        time.sleep(0.1)
    return False


def test_reload_mid_run_keeps_streaming(page: Page, browser, app_url: str, shot) -> None:
    page.reload()
    open_tab(page, "run")
    progress = page.locator("#tb-progress")
    expect(progress).to_contain_text(re.compile("running", re.I))
    step = int(re.search(r"step (\d+)/", progress.inner_text()).group(1))
    expect(progress).not_to_contain_text(f"step {step}/", timeout=20_000)
    expect(page.locator("#tb-loss-plot g.mark-line path").first).to_be_attached()
    # A second browser on the same app sees the same run streaming.
    other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    other.goto(app_url)
    other.locator("#tb-tab-run-button").click()
    expect(other.locator("#tb-progress")).to_contain_text(re.compile("running", re.I), timeout=SLOW)
    expect(other.locator("#tb-loss-plot g.mark-line path").first).to_be_attached(timeout=SLOW)
    other.context.close()
    shot(page, "5-run-after-reload")


def test_stop_keeps_a_checkpoint(page: Page, shot, app_home: Path) -> None:
    page.locator("#tb-stop").click()
    expect(page.locator("#tb-progress")).to_contain_text(re.compile("stopped", re.I), timeout=90_000)
    run_dir = newest_run(app_home)
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped" and (run_dir / status["checkpoint"] / "trainer_state.json").is_file()
    expect(page.locator("#tb-stop")).to_be_disabled()
    page.locator("#tb-config-accordion").click()
    expect(page.locator("#tb-cli input, #tb-cli textarea").first).to_have_value(
        re.compile(r"python -m finetune train .*--run-dir")
    )
    expect(page.locator("#tb-effective")).to_contain_text("name: chatml")  # the run's effective_config.yaml
    shot(page, "5-run-stopped")


def test_find_the_run_in_the_list(page: Page, shot, app_home: Path) -> None:
    run_dir = newest_run(app_home)
    open_tab(page, "runs")
    table = page.locator("#tb-runs-table")
    expect(table).to_contain_text(run_dir.name)
    expect(table).to_contain_text("stopped")
    table.get_by_test_id("cell-0-0").click()
    expect(page.locator("#tb-runs-plot g.mark-line path").first).to_be_attached()
    shot(page, "6-runs")


def test_tensorboard_in_the_page(page: Page, shot, app_url: str) -> None:
    open_tab(page, "run")
    page.locator("#tb-tb-accordion").click()
    page.locator("#tb-tb-open").click()
    frame = page.frame_locator("#tb-tensorboard")
    expect(frame.locator("body")).to_contain_text(re.compile("TensorBoard|Scalars|SCALARS"), timeout=90_000)
    assert page.locator("#tb-tensorboard").get_attribute("src") == "tensorboard/"  # same host and port
    shot(page, "5-run-tensorboard")


def test_japanese_interface_and_errors_next_to_the_field(page: Page, shot) -> None:
    page.get_by_label("日本語").check()
    expect(page.locator("#tb-tab-hparams-button")).to_contain_text("ハイパーパラメータ")
    open_tab(page, "hparams")
    expect(page.get_by_text("学習データを何周するか。")).to_be_visible()
    lr = page.get_by_label("学習率", exact=True)
    lr.fill("5")
    lr.press("Tab")
    expect(page.get_by_text(re.compile(r"1(\.0)? 以下の値にしてください")).first).to_be_visible()
    expect(page.locator("#tb-banner")).to_contain_text("学習率")
    shot(page, "4-hyperparameters-ja")
    lr.fill("0.003")
    lr.press("Tab")
    expect(page.locator("#tb-banner")).to_be_empty()
    page.get_by_label("English").check()
    expect(page.locator("#tb-tab-hparams-button")).to_contain_text("Hyperparameters")


def test_the_form_survives_a_reload_and_resets_to_the_demo(page: Page) -> None:
    page.reload()
    expect(page.get_by_role("spinbutton", name="Learning rate")).to_be_visible()  # the section it was on
    open_tab(page, "dataset")
    expect(page.locator("#tb-preview")).to_contain_text("返品はできますか")  # still the uploaded CSV
    expect(page.get_by_text("40 training records")).to_be_visible()
    page.locator("#tb-reset").click()
    expect(page.get_by_text("300 training records")).to_be_visible()
    expect(page.get_by_label("Data path or id")).to_have_value("builtin:sample-chat")
