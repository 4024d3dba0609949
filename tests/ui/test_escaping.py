"""User text on the page stays text: run ids, column names, paths and preset text never become markup, and the
config download cannot be redirected through a planted symlink.

    .venv/bin/pytest tests/ui/test_escaping.py -q     # ~10 s; the rendering check needs /usr/bin/chromium

Markdown: charts.md_text / i18n.t_md, checked on the strings the handlers produce and once in a browser, on
what gradio 6.31's gr.Markdown (marked + GFM + sanitizer) really draws. HTML: charts.esc (the banner).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
import yaml
from conftest import free_port

from finetune import presets
from finetune.ui import charts, downloads, hparams_tab, i18n, run_tab
from finetune.ui.context import config_from

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = [
    "<b>x</b> <img src=x onerror=alert(1)> <script>alert(1)</script>",
    "**bold** __strong__ *em* _em_ ~~gone~~ `code`",
    "[link](http://evil.example) ![img](http://evil.example/x.png) <http://evil.example>",
    "http://evil.example www.evil.example mail@evil.example",
    "$$x^2$$ | a | b |",
    "&lt;b&gt; &amp; a\\*b\\* 'single' \"double\"",
    "# heading",
    "1. list",
    "my__model__name col_a_ _b_",
]
# A directory name cannot hold "/", so the run id carries an unclosed tag, emphasis and a link without one.
RUN_ID = "r<b>x<b>**bold**[link](https:evil.example)www.evil.example"
LIVE_TAGS = "a, b, strong, em, i, code, pre, img, script, del, s, table, h1, h2, h3, ol, ul, li, .katex"


def _unescaped_markup(text: str) -> list[str]:
    """Markdown punctuation or HTML specials in ``text`` that are neither backslash-escaped nor an entity."""
    text = re.sub(r"&(?:amp|lt|gt|quot|#x27);", "", text)
    text = re.sub(r"\\[" + re.escape(string.punctuation) + "]", "", text)
    return [c for c in text if c in string.punctuation]


def test_md_text_escapes_every_markup_character() -> None:
    assert charts.md_text("<b>x</b>") == "&lt;b&gt;x&lt;\\/b&gt;"
    assert charts.md_text("[link](http://evil.example)") == "\\[link\\]\\(http\\:\\/\\/evil\\.example\\)"
    assert charts.md_text("a\n# b\r\n\n  c") == "a \\# b c"  # no new block: heading, list, code
    assert charts.md_text("データ　列") == "データ　列"  # non-ASCII text and the ideographic space kept
    assert charts.md_text(3) == "3"
    for value in HOSTILE:
        out = charts.md_text(value)
        assert not _unescaped_markup(out), (value, out)
        assert "\n" not in out and "<" not in out and "http:" not in out and "www." not in out


def test_t_md_escapes_values_not_the_locale_markdown() -> None:
    note = i18n.t_md("en", "run.config_of_run", run="**x**")
    assert note == "Run **\\*\\*x\\*\\***: the config it was started with."
    assert i18n.t_md("en", "runs.count", n=3) == i18n.t("en", "runs.count", n=3)  # numbers untouched
    assert i18n.t("en", "run.config_of_run", run="**x**") == "Run ****x****: the config it was started with."


@pytest.fixture
def hostile_run(ctx) -> Iterator[str]:
    """A finished run whose directory name is markup, in the page's shared data directory; removed after."""
    run_dir = ctx.runs_root / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "finished"}), encoding="utf-8")
    (run_dir / "config.yaml").write_text("task: sft\n", encoding="utf-8")
    try:
        yield RUN_ID
    finally:
        shutil.rmtree(run_dir)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_run_config_note_shows_a_hostile_run_id_as_text(ctx, hostile_run: str, lang: str) -> None:
    follow = run_tab.follow_run(ctx, hostile_run)
    note, _cli, path, _effective = run_tab.config_view(ctx, follow, lang, None)
    assert note == i18n.t(lang, "run.config_of_run", run=charts.md_text(hostile_run))
    assert "<b>" not in note and "**bold**" not in note and "](" not in note and "www." not in note
    assert Path(path).read_text(encoding="utf-8") == "task: sft\n"


def test_preset_note_shows_preset_text_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hparams").mkdir()
    preset = {"name": "**Loud** <b>x</b>", "description": "see [this](http://evil.example)", "values": {}}
    (tmp_path / "hparams" / "loud.yaml").write_text(yaml.safe_dump(preset), encoding="utf-8")
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)  # a real preset file, in a folder of its own
    note = hparams_tab.preset_note("loud", "en")
    expected = {"name": charts.md_text(preset["name"]), "description": charts.md_text(preset["description"])}
    assert note == i18n.t("en", "hparams.applied", **expected)
    assert "<b>" not in note and "](" not in note and "http:" not in note


def test_banner_quotes_a_hostile_path_as_text(ctx, form: dict) -> None:
    path = "/nowhere/<b>x</b>/**y**[l](http://evil.example).jsonl"
    d = {**form, ctx.binder.component("dataset.path"): path}
    banner = ctx.run_analysis(d)[ctx.banner]
    assert "tb-banner" in banner and "<b>x" not in banner and "&lt;b&gt;x&lt;/b&gt;" in banner


def test_dataset_summary_shows_hostile_column_names_as_text(ctx, form: dict, tmp_path: Path) -> None:
    from finetune.ui import dataset_tab

    table = tmp_path / "hostile.csv"
    table.write_text('"<b>q</b>","**a**[x](http://evil.example)"\nWhen?,At nine.\n', encoding="utf-8")
    columns = {"prompt": "<b>q</b>", "completion": "**a**[x](http://evil.example)"}
    d = {**form, ctx.binder.component("dataset.path"): str(table), ctx.binder.component("task"): "sft"}
    d |= {ctx.binder.component(f"dataset.columns.{role}"): name for role, name in columns.items()}
    analysis = ctx.run_analysis(d)[ctx.analysis]
    assert analysis["ok"], analysis["problems"]
    summary = dataset_tab._preview_info(ctx, {ctx.lang: "en", ctx.analysis: analysis})
    assert "1" in summary and "<b>" not in summary and "**a**" not in summary and "](" not in summary
    assert charts.md_text("<b>q</b>") in summary


# ---------------------------------------------------------------- what gr.Markdown really draws


def test_gradio_markdown_draws_md_text_literally() -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    shown = [*HOSTILE, "a\n\n# b\n    c"]
    with gr.Blocks() as demo:
        for i, value in enumerate(shown):
            gr.Markdown(charts.md_text(value), elem_id=f"md{i}")
        gr.Markdown(i18n.t_md("en", "run.config_of_run", run=RUN_ID), elem_id="note")
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(demo.local_url)
            for i, value in enumerate(shown):
                box = page.locator(f"#md{i} span.md")
                box.wait_for()
                assert box.inner_text().strip() == " ".join(value.split()), value
                assert box.locator(LIVE_TAGS).count() == 0, box.inner_html()
            note = page.locator("#note span.md")
            assert note.inner_text().strip() == f"Run {RUN_ID}: the config it was started with."
            assert note.locator("strong").count() == 1 and note.locator("a, b, em").count() == 0
            browser.close()
    finally:
        demo.close()


# ---------------------------------------------------------------- the config download


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_download_ignores_a_planted_symlink_and_is_private(ctx, form: dict, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    shared = Path(tempfile.gettempdir()) / "tuneboard-downloads"  # the name the download used to write to
    planted, made = shared / "form" / "config.yaml", not shared.exists()
    try:
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.unlink(missing_ok=True)
        planted.symlink_to(victim)
    except PermissionError:
        pytest.skip(f"{shared} belongs to another user here")
    try:
        first = Path(run_tab.config_view(ctx, {}, "en", form)[2])
        second = Path(run_tab.config_view(ctx, {}, "en", form)[2])
    finally:
        planted.unlink()
        if made:
            shutil.rmtree(shared)
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert first.read_text(encoding="utf-8") == config_from(form, ctx.binder).to_yaml()
    assert first.name == second.name == "config.yaml" and first.parent != second.parent
    for path in (first, second):
        assert not path.is_symlink() and _mode(path) == 0o600 and _mode(path.parent) == 0o700
        assert path.parent.parent == downloads._downloads_root() and _mode(path.parent.parent) == 0o700
        assert path.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())  # gradio serves it


def test_download_folders_stay_bounded(ctx, form: dict) -> None:
    paths = [Path(run_tab.config_view(ctx, {}, "en", form)[2]) for _ in range(40)]
    assert len({path.parent for path in paths}) == 40  # a folder of its own each time
    root = paths[-1].parent.parent
    assert {path.parent.parent for path in paths} == {root}
    assert len(list(root.iterdir())) <= downloads.KEEP_DOWNLOADS
    assert paths[-1].is_file() and not paths[0].exists()


def test_a_field_error_quoting_user_text_shows_no_link(ctx) -> None:
    from finetune.ui import binder

    problem = binder.Problem("dataset.path", "file [click](http://evil.example) **now** does not exist")
    updates, _ = ctx.binder.problem_updates([problem], "en", [])
    info = updates[ctx.binder.component("dataset.path")]["info"]
    assert "](" not in info and "**" not in info  # gradio's help line would make a link and bold of them
    assert info.replace("\u2060", "") == "⚠ " + problem.message  # nothing visible changed
