"""The bad-input table (tests/test_bad_input.py) through the page's own handlers, without a browser.

    .venv/bin/pytest tests/ui/test_bad_input_page.py -q

Each case's config is loaded into the form as a browser would send it back (every value through its
component's postprocess and preprocess, so a value gradio refuses, like a batch size below the slider's
minimum, is refused here too), then the analysis every committed field triggers and the Run tab's Start run.
The message must sit next to the named field and in the banner, in English and for a few cases in Japanese,
and no run directory may appear. Cases the page cannot express are CLI-only in the table, with the reason;
a test checks that claim. The page is the session's one page (tests/ui/conftest.py); at the end a good
config still starts.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from test_bad_input import (
    CASES,
    DEMO,
    DISKS,
    Case,
    bad_disk,
    cases,
    hold_the_slot,
    row,
    write,
)

from finetune import config as cfg
from finetune import jobs, scheduler
from finetune import status as st
from finetune.ui import i18n

ROOT = Path(__file__).resolve().parents[2]


def handler(blocks: gr.Blocks, name: str) -> Any:
    """A function the page registered on one of its events (the Run tab's ``start``, ``resume``...)."""
    return next(f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == name)


def case_config(case: Case, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(presets/demo.yaml -- the page's starting form -- with the case's overrides, the overrides)."""
    raw = cfg.load(ROOT / DEMO).user_dict()
    overrides = cfg.parse_overrides(case.build(folder))
    for path, value in overrides.items():
        cfg.set_path(raw, path, value)
    return raw, overrides


def form_of(ctx, raw: dict[str, Any], lang: str = "en") -> dict[Any, Any]:
    """The form showing ``raw``, as the browser sends it back; raises gr.Error where gradio refuses."""
    values = {c: c.preprocess(c.postprocess(v)) for c, v in ctx.binder.load(raw).items()}
    return {**values, ctx.lang: lang, ctx.shown: [], ctx.run.follow: {}, ctx.run.watch: None}


def expresses(ctx, case: Case, folder: Path) -> bool:
    """Whether the page can hold the case's overrides: gradio accepts them and the form writes them back."""
    raw, overrides = case_config(case, folder)
    try:
        form = form_of(ctx, raw)
    except gr.Error:
        return False
    written = ctx.binder.raw(form)
    for path, value in overrides.items():
        try:
            if cfg.get_path(written, path) != value:
                return False
        except KeyError:
            return False
    return True


def entries(root: Path) -> set[str]:
    """Run directories, hidden half-built ones included (the queue's lock and order files are no runs)."""
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def assert_shown(ctx, out: dict[Any, Any], field: str, words: str, lang: str) -> None:
    """``words`` next to ``field`` (its help line turned into the problem) and in the banner."""
    banner = html.unescape(out[ctx.banner])
    head = i18n.t(lang, "errors.banner", n=1).split("{")[0][:8]
    assert head in banner and words in banner, banner
    owner = ctx.binder.owner(field) if field else None
    if owner is None:  # no field to show it next to (the data directory): the banner says it all
        assert not [u for u in out.values() if isinstance(u, dict) and "⚠" in str(u.get("info", ""))]
        return
    assert i18n.field_label(lang, owner.path) in banner
    info = out[owner.error_target]["info"]
    assert info.startswith("⚠") and words in info, info


@pytest.fixture
def page(page_ctx, tiny_gemma: str):
    blocks, ctx = page_ctx
    before = entries(ctx.runs_root)
    yield blocks, ctx
    assert entries(ctx.runs_root) == before  # nothing was written, not even a hidden half-built run


@pytest.mark.parametrize("case", cases(where=("both",)))
def test_page_shows_the_problem_next_to_its_field(page, tmp_path: Path, case: Case) -> None:
    blocks, ctx = page
    form = form_of(ctx, case_config(case, tmp_path)[0])
    assert_shown(ctx, ctx.run_analysis(form), case.field, case.words, "en")
    assert_shown(ctx, handler(blocks, "start")(form), case.field, case.words, "en")


@pytest.mark.parametrize("case", [p for p in cases(where=("both",)) if p.values[0].ja])
def test_page_shows_the_problem_in_japanese(page, tmp_path: Path, case: Case) -> None:
    blocks, ctx = page
    form = form_of(ctx, case_config(case, tmp_path)[0], "ja")
    assert_shown(ctx, handler(blocks, "start")(form), case.field, case.ja, "ja")


@pytest.mark.parametrize("case", cases(where=("cli",)))
def test_cli_only_cases_really_cannot_be_set_in_the_page(ctx, tmp_path: Path, case: Case) -> None:
    assert not expresses(ctx, case, tmp_path), f"test {case.id} in the page"


@pytest.mark.parametrize("case", cases(where=("both",)) + cases("accepted"))
def test_page_cases_are_what_the_table_says(ctx, tmp_path: Path, case: Case) -> None:
    assert expresses(ctx, case, tmp_path)


@pytest.mark.parametrize("case", cases("accepted"))
def test_page_accepts(page, tmp_path: Path, case: Case) -> None:
    _, ctx = page
    out = ctx.run_analysis(form_of(ctx, case_config(case, tmp_path)[0]))
    assert out[ctx.banner] == "" and out[ctx.analysis]["problems"] == []
    assert out[ctx.analysis]["ok"] and "\ufeff" not in str(out[ctx.analysis])


@pytest.mark.parametrize(("kind", "case_id"), DISKS)
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_start_on_a_bad_disk(
    page_ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, case_id: str, lang: str
) -> None:
    blocks, ctx = page_ctx
    bad = row(case_id)
    home = tmp_path / "home"
    with bad_disk(home, monkeypatch, kind):
        monkeypatch.setattr(ctx, "home", home)  # this page's data directory is on the bad disk now
        out = handler(blocks, "start")(form_of(ctx, cfg.load(ROOT / DEMO).user_dict(), lang))
        assert_shown(ctx, out, "", bad.words if lang == "en" else bad.ja, lang)
        assert entries(ctx.runs_root) == set()


def test_resume_after_the_dataset_is_gone(page_ctx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start queues behind a busy slot; the file goes; the queued run is cancelled and Resume refuses it,
    naming dataset.path, and queues nothing (the job's own refusal: tests/test_bad_input.py)."""
    blocks, ctx = page_ctx
    monkeypatch.setattr(ctx, "home", tmp_path / "home")
    hold_the_slot(ctx.runs_root, monkeypatch)
    data = Path(write(tmp_path / "chats.csv", "prompt,completion\nHi,Hello.\nBye,See you.\n"))
    raw = cfg.load(ROOT / DEMO, {"dataset.path": str(data)}).user_dict()
    out = handler(blocks, "start")(form_of(ctx, raw))
    (run_id,) = scheduler.queue(ctx.runs_root)
    assert out[ctx.run.watch]["value"] == run_id
    data.unlink()
    scheduler.cancel(ctx.runs_root / run_id)
    form = form_of(ctx, raw) | {ctx.run.watch: run_id}
    bad = row("dataset-gone-before-the-job-starts")
    assert_shown(ctx, handler(blocks, "resume")(form), bad.field, bad.words, "en")
    assert st.read(ctx.runs_root / run_id)["state"] == "cancelled" and scheduler.queue(ctx.runs_root) == []


def test_a_good_config_still_starts(page, tmp_path: Path) -> None:
    """After every bad input above, the same page starts a run: the app kept serving."""
    blocks, ctx = page
    accepted = next(c for c in CASES if c.outcome == "accepted")
    raw, _ = case_config(accepted, tmp_path)
    cfg.set_path(raw, "training.max_steps", 1)
    out = handler(blocks, "start")(form_of(ctx, raw))
    run_id = out[ctx.run.watch]["value"]
    assert out[ctx.banner] == "" and run_id
    status = jobs.reconcile(ctx.runs_root / run_id)
    assert status["state"] in ("starting", "running") and status["pid"], status  # a trainer was spawned
    scheduler.stop(ctx.runs_root / run_id, wait=60)
    assert st.read(ctx.runs_root / run_id)["state"] in st.FINAL_STATES
    shutil.rmtree(ctx.runs_root / run_id)  # the page fixture checks that the data directory is as it was
