"""finetune/analyst.py: the page's previews computed in a process of their own, so the dashboard's process
never holds torch, transformers or TRL.

    .venv/bin/pytest tests/test_analyst.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT

from finetune import analyst
from finetune import config as cfg
from finetune.errors import JobError, TemplateError

DEMO = ROOT / "presets" / "demo.yaml"
HEAVY = ("torch", "transformers", "trl", "peft", "accelerate", "scipy", "sklearn")


@pytest.fixture
def handle():
    found = analyst.Analyst()
    yield found
    found.close()


def test_answers_and_errors_come_back_as_the_engine_gives_them(handle, tiny_llama: str) -> None:
    demo = cfg.load(DEMO)
    analysis = handle.call("analyze", demo)
    assert analysis["records"] == 300 and analysis["template"] == "llama3.1"
    split = handle.call("tokenize_compare", demo, "Hi <user_name>")
    assert [p["text"] for p in split["after"]][-1] == "<user_name>"
    broken = cfg.load(DEMO, {"template.name": "custom", "template.custom": "{% for m in messages %}"})
    with pytest.raises(TemplateError) as raised:  # its own class, field and message, not a traceback
        handle.call("analyze", broken)
    assert raised.value.field == "template.name" and "syntax error" in raised.value.message
    with pytest.raises(JobError, match="no such analysis: 'checked'"):  # only the page's calls
        handle.call("checked", demo)


def test_a_fresh_process_answers_requests_that_arrive_together(tiny_llama: str) -> None:
    """A page load asks for several analyses at once of a process that has just started: each is answered,
    none with the ImportError of two threads importing transformers' lazy modules together (3 of 4 fresh
    processes failed one request before the imports were made in one thread)."""
    demo = cfg.load(DEMO)
    for _ in range(2):
        handle = analyst.Analyst()
        try:
            names = ("run_files", "analyze", "effective_config", "unused_tokens", "dataset_preview")
            with ThreadPoolExecutor(len(names)) as pool:
                asked = [pool.submit(handle.call, name, demo.dataset if name == "dataset_preview" else demo)
                         for name in names]  # fmt: skip
                answers = [future.result() for future in asked]
        finally:
            handle.close()
        assert answers[1]["records"] == 300 and answers[4]["columns"]


def test_an_idle_process_exits_and_the_next_request_starts_another(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNEBOARD_ANALYST_IDLE", "1")
    handle = analyst.Analyst()
    try:
        assert handle.call("family_of", cfg.load(DEMO).model)["id"] == "llama3.1"
        first = handle.channel.proc
        deadline = time.monotonic() + 60
        while first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.returncode == 0  # it left on its own, its memory with it
        assert handle.call("family_of", cfg.load(DEMO).model)["id"] == "llama3.1"
        assert handle.channel.proc is not first
    finally:
        handle.close()


def test_a_request_the_process_died_on_is_sent_to_a_new_one_once(handle, tiny_llama: str) -> None:
    demo = cfg.load(DEMO)
    handle.call("family_of", demo.model)
    handle.channel.proc.kill()  # as the kernel's OOM killer would
    assert handle.call("family_of", demo.model)["id"] == "llama3.1"


def test_the_dashboards_process_never_imports_the_training_libraries(tmp_path: Path, tiny_llama: str) -> None:
    """The page built, its first analysis run (as a page load does) and Start pressed, in a fresh process:
    the libraries are in the analysis process and the run's, not in it."""
    code = f"""
import json, sys
from pathlib import Path
from finetune import ui
def main():
    home = Path(sys.argv[1])
    import os; os.environ.update(ui.gradio_env(home))
    from finetune.ui import page
    from finetune import runs, scheduler
    blocks, ctx = page.build_with_ctx(home)
    form = {{f.component: f.component.value for f in ctx.binder.fields.values()}}
    form[ctx.lang], form[ctx.shown] = "en", []
    result = ctx.run_analysis(form)[ctx.analysis]
    fns = [f.fn for f in blocks.fns.values()]
    start = next(f for f in fns if f.__name__ == "start" and f.__module__.endswith("run_tab"))
    start(form)  # Start: checked, its run directory made and its process launched
    (run,) = runs.list_runs(ctx.runs_root)
    print(json.dumps({{"ok": result["ok"], "records": result.get("records"), "run": run.state,
                      "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    scheduler.stop(ctx.runs_root / run.id, wait=60)
if __name__ == "__main__":
    main()
"""
    env = os.environ | {"TUNEBOARD_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "home")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert shown["run"] in ("queued", "starting", "running") and shown["loaded"] == []
    assert (shown["ok"], shown["records"]) == (True, 300)
