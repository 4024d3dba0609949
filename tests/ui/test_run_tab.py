"""The Run section without a browser: its view of a followed run (finetune/runs.py follows it), the config
panel, and the Runs section's comparison through the real page handlers.

.venv/bin/pytest tests/ui/test_run_tab.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from finetune import procs, runs
from finetune.ui import run_tab


def make_run(root: Path, name: str, state: str, started: str, **status) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": state, "started_at": started, **status}))
    (run_dir / "config.yaml").write_text("task: sft\n")
    return run_dir


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_a_followed_run_draws_its_loss_plot(tmp_path: Path) -> None:
    # Following itself (attach, poll) is finetune/runs.py's: tests/test_runs.py.
    run_dir = make_run(tmp_path, "r1", "finished", "2025-01-01T00:00:00+00:00")
    append(run_dir / "metrics.jsonl", json.dumps({"step": 2, "loss": 3.0}))
    follow = runs.attach(tmp_path, "r1")
    append(run_dir / "metrics.jsonl", json.dumps({"step": 4, "loss": 2.5}))
    follow, _, _ = runs.poll(tmp_path, follow)
    frame = run_tab.charts.metric_frame(follow["rows"], run_tab.PLOTS["loss_plot"])
    assert list(frame["step"]) == [2, 4] and set(frame["series"]) == {"loss"}


# ---------------------------------------------------------------- issue 8: through the real page handlers


def page_handler(blocks, module: str, name: str):
    """A function ``module`` registered on the page under ``name`` (e.g. runs_tab's ``show``)."""
    return next(
        f.fn
        for f in blocks.fns.values()
        if getattr(f.fn, "__name__", "") == name and f.fn.__module__.endswith(module)
    )


def test_before_any_run_the_section_says_so(ctx) -> None:
    out = run_tab.view(ctx, {}, "en")
    assert "No run yet" in out[ctx.run.progress] and "unknown" not in out[ctx.run.progress]
    assert "まだ実行はありません" in run_tab.view(ctx, {}, "ja")[ctx.run.progress]


def test_the_config_panel_follows_the_run_on_screen_and_fills_in(ctx) -> None:
    p = ctx.run
    run_dir = make_run(ctx.runs_root, "i8-config", "starting", "2025-02-01T00:00:00+00:00")
    out = run_tab.view(ctx, run_tab.follow_run(ctx, "i8-config"), "en")  # Start, Watch in Run, a pick
    assert "Run **i8\\-config**" in out[p.config_note] and "i8-config" in out[p.cli]  # Markdown-escaped
    assert out[p.effective] == "(written when the run has passed its checks)"
    follow, _, _ = run_tab.poll_run(ctx, out[p.follow])
    assert p.effective not in run_tab.view(ctx, follow, "en")  # nothing new: the panel is left alone
    (run_dir / "effective_config.yaml").write_text("training:\n  max_steps: 12\n", encoding="utf-8")
    follow, _, _ = run_tab.poll_run(ctx, follow)
    out = run_tab.view(ctx, follow, "en")  # the next tick, once the run has written it
    assert "max_steps: 12" in out[p.effective]
    follow, _, _ = run_tab.poll_run(ctx, out[p.follow])
    assert p.effective not in run_tab.view(ctx, follow, "en")


def test_the_progress_line_says_the_eta_is_an_estimate(ctx) -> None:
    me = {"pid": os.getpid(), "pid_start_time": procs.start_time(os.getpid())}
    make_run(ctx.runs_root, "i8-eta", "running", "2025-02-01T00:00:00+00:00", step=4, max_steps=10, **me)
    rows = [{"step": s, "elapsed": 2.0 * s} for s in (2, 4)]
    append(ctx.runs_root / "i8-eta" / "metrics.jsonl", *(json.dumps(r) for r in rows))
    html = run_tab.view(ctx, run_tab.follow_run(ctx, "i8-eta"), "en")[ctx.run.progress]
    assert "step 4/10" in html and "left (at the recent pace)" in html and "ETA" not in html


def test_after_its_last_step_the_progress_line_says_the_stop_check_is_answering(ctx) -> None:
    me = {"pid": os.getpid(), "pid_start_time": procs.start_time(os.getpid())}
    checking = {"answered": 8, "asked": 32, "limit_s": 300.0}
    make_run(ctx.runs_root, "i12-check", "running", "2025-02-01T00:00:00+00:00", step=6, max_steps=6,
             checking=checking, **me)  # fmt: skip
    html = run_tab.view(ctx, run_tab.follow_run(ctx, "i12-check"), "en")[ctx.run.progress]
    assert "checking that it stops: 8/32 prompts answered (at most 5:00)" in html and "left" not in html
    ja = run_tab.view(ctx, run_tab.follow_run(ctx, "i12-check"), "ja")[ctx.run.progress]
    assert "停止チェック中: 32 件中 8 件に回答済み(最長 5:00)" in ja


def test_compared_runs_each_get_a_colour_and_a_full_name(page_ctx) -> None:
    blocks, ctx = page_ctx
    for name, lr in (
        ("20250301-083957-classification-tiny-llama", 1e-3),
        ("20250301-090012-classification-tiny-llama", 3e-3),
    ):
        run_dir = make_run(ctx.runs_root, name, "finished", "2025-03-01T00:00:00+00:00")
        append(
            run_dir / "metrics.jsonl",
            *(json.dumps({"step": s, "loss": 1 / s, "learning_rate": lr}) for s in (1, 2)),
        )
    names = ["20250301-083957-classification-tiny-llama", "20250301-090012-classification-tiny-llama"]
    plot, scale, legend, _, config = page_handler(blocks, "runs_tab", "show")(names, "loss", "en")
    assert set(plot["series"]) == set(names)
    assert (
        scale["color_map"] == run_tab.charts.run_colors(names) and len(set(scale["color_map"].values())) == 2
    )
    assert all(name in legend for name in names) and "Log and config.yaml below: " + names[0] in legend
    assert config == "task: sft\n"
    update = page_handler(blocks, "runs_tab", "scale")(scale)  # the second step: after the data
    assert update["color_map"] == scale["color_map"] and update["y_title"] == "loss"
    _, scale, legend, _, _ = page_handler(blocks, "runs_tab", "show")(names, "eval_loss", "en")
    assert scale["color_map"] == {} and legend.count("(no eval_loss points)") == 2
