"""What the Dataset section may read, through the page's own handlers: typed paths, caches, wide tables.

    .venv/bin/pytest tests/ui/test_data_paths.py -q

The probe typed /proc/self/environ (task text, format txt) into "Data path or id" and read HF_TOKEN and the
accounts' passwords in the preview. Here the same typing goes through the handlers the page runs (the
preview, the analysis every field triggers, Start), on a page only its owner reaches and on one others can
reach (finetune/paths.py), with a secret in this process's environment that must show up nowhere.
"""

from __future__ import annotations

import csv
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from finetune import config as cfg
from finetune import data, datafiles, paths
from finetune.ui import dataset_tab, page
from ui.test_bad_input_page import entries, form_of, handler

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hf_probe_secret_do_not_show"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("TUNEBOARD_AUTH", f"admin:{SECRET}")
    return SECRET


@pytest.fixture(params=["owner", "shared"])
def site(request, page_ctx, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """(blocks, ctx) of the session's page, reachable by its owner only or by others (a login, a Space)."""
    blocks, ctx = page_ctx
    monkeypatch.setattr(ctx, "home", tmp_path / "home")
    shared = request.param == "shared"
    monkeypatch.setattr(ctx.binder, "access", paths.Access.from_env(ctx.home, shared=shared, environ={}))
    return blocks, ctx


def typed(ctx, path: str, fmt: str = "auto", task: str = "text") -> dict:
    raw = cfg.load(ROOT / "presets" / "demo.yaml").user_dict()
    raw |= {"task": task, "dataset": {"path": path, "format": fmt}, "tokens": {}}
    return form_of(ctx, raw)


def everything(out: dict) -> str:
    return repr(list(out.values()))


@pytest.mark.parametrize("target", ["/proc/self/environ", "/proc/self/cmdline", "/etc/passwd"])
def test_a_system_file_typed_as_the_data_path_shows_nothing(site, secret: str, target: str) -> None:
    blocks, ctx = site
    form = typed(ctx, target, "txt")
    preview = dataset_tab.load_preview(ctx, form, None, None)  # Enter in "Data path or id"
    analysis = ctx.run_analysis(form)
    started = handler(blocks, "start")(form)
    for out in (preview, analysis, started):
        shown = everything(out)
        assert secret not in shown and "root:" not in shown and "PATH=" not in shown
        assert "leads into /proc, /sys or /dev" in shown or "is not a data file" in shown
    assert preview[ctx.dataset.preview] is None and not analysis[ctx.analysis]["ok"]
    assert entries(ctx.runs_root) == set()


def test_a_shared_page_refuses_files_outside_the_allowed_folders(site, tmp_path: Path) -> None:
    blocks, ctx = site
    private = tmp_path / "elsewhere" / "private.csv"
    private.parent.mkdir()
    private.write_text("prompt,completion\nsecret question,secret answer\n")
    out = dataset_tab.load_preview(ctx, typed(ctx, str(private), task="sft"), None, None)
    if ctx.binder.access.shared:
        assert "can be reached by others" in everything(out) and "secret answer" not in everything(out)
        assert "TUNEBOARD_DATA_DIRS" in everything(out)
    else:  # the owner at the keyboard reads any data file of theirs
        assert "secret answer" in out[ctx.dataset.preview]["value"].to_string()


def test_an_upload_is_readable_on_a_shared_page(site, tmp_path: Path, monkeypatch) -> None:
    _, ctx = site
    cache = tmp_path / "gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    dropped = cache / "h1" / "faq.csv"
    dropped.parent.mkdir(parents=True)
    dropped.write_text("prompt,completion\nWhen do you open?,At nine.\nWhere?,Tokyo.\n")
    stored = dataset_tab.store_upload(ctx.home, str(dropped))
    out = dataset_tab.load_preview(ctx, typed(ctx, "builtin:sample-chat", task="sft"), stored, "auto")
    assert "At nine." in out[ctx.dataset.preview]["value"].to_string()
    assert ctx.run_analysis(typed(ctx, stored, task="sft"))[ctx.analysis]["records"] == 2


def test_the_arrow_copy_of_a_table_stays_in_the_data_directory(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEBOARD_HOME", str(home))
    table = tmp_path / "faq.csv"
    table.write_text("prompt,completion\nWhen?,At nine.\n")
    ds = data.load(cfg.DatasetConfig(path=str(table)))
    folder = (home / ".cache" / "datasets").resolve()
    assert ds.cache_files and all(Path(f["filename"]).is_relative_to(folder) for f in ds.cache_files)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # the copies hold the table's text


def test_cache_entries_nothing_uses_are_removed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("text\nold\n")
    new.write_text("text\nnew\n")
    stale = data.load(cfg.DatasetConfig(path=str(old)))
    fresh = data.load(cfg.DatasetConfig(path=str(new)))
    folder = datafiles.cache_dir()
    day_ago = time.time() - 2 * datafiles.CACHE_MAX_AGE
    stale_entry = Path(stale.cache_files[0]["filename"]).parents[2]  # csv/default-<hash>
    for f in [stale_entry, *stale_entry.rglob("*")]:
        os.utime(f, (day_ago, day_ago))
    gone = datafiles.clean_cache(folder)
    assert stale_entry in gone and not stale_entry.exists()
    assert Path(fresh.cache_files[0]["filename"]).is_file()
    assert data.load(cfg.DatasetConfig(path=str(old)))["text"] == ["old"]  # rebuilt when needed again


def test_a_table_with_ten_thousand_columns_shows_fifty(ctx, form: dict, tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    with wide.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", *(f"c{i}" for i in range(9_999))])
        writer.writerows([["hello", *range(9_999)], ["world", *range(9_999)]])
    out = dataset_tab.load_preview(ctx, form, str(wide), "auto")
    table = out[ctx.dataset.preview]
    assert list(table["value"].columns) == ["text", *(f"c{i}" for i in range(49))]
    assert table["label"] == "First rows — 50 of 10,000 columns shown; map the others by typing their names."
    choices = out[ctx.binder.component("dataset.columns.text")]["choices"]
    assert len(choices) == 1 + dataset_tab.MAX_CHOICES and choices[1] == ("text", "text")


def test_files_posted_to_the_upload_route_are_swept_from_gradios_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama: str
) -> None:
    """An upload posted straight to /gradio_api/upload (no page event ever uses it) leaves the cache, on the
    page's own schedule: here every second for files older than a second (CACHE_CLEANING: 5 and 15 min)."""
    from conftest import free_port

    from finetune import ui

    home = tmp_path / "home"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))
    monkeypatch.setattr(page, "CACHE_CLEANING", (1, 1))
    demo = page.build(home)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **ui.launch_kwargs(home, demo))  # fmt: skip
    try:
        posted = httpx.post(
            f"http://127.0.0.1:{port}/gradio_api/upload",
            files={"files": ("x.csv", b"a,b\n1,2\n")},
            timeout=30,
        )
        (cached,) = posted.json()
        assert Path(cached).is_file() and Path(cached).resolve().is_relative_to(home.resolve())
        deadline = time.monotonic() + 20
        while Path(cached).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not Path(cached).exists()
    finally:
        demo.close()
