"""Section 7, Try it (finetune/ui/try_tab.py), without a browser: which runs and weights a request may name,
and the stop figure as the page writes it.

.venv/bin/pytest tests/ui/test_try_tab.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune import stops
from finetune.errors import JobError
from finetune.ui import try_tab


def test_only_a_listed_run_and_its_weights_can_be_asked(demo_run: Path) -> None:
    root = demo_run.parent
    assert try_tab.runs_with_weights(root) == [demo_run.name]
    assert try_tab.chosen_run(root, demo_run.name, "checkpoint-38") == demo_run
    for run_id, weights in [("../" + demo_run.name, None), ("/etc", None), (demo_run.name, "checkpoint-5"),
                            (demo_run.name, "../../final"), (None, None)]:  # fmt: skip
        with pytest.raises(JobError, match="to answer with: pick one"):
            try_tab.chosen_run(root, run_id, weights)


def test_the_stop_figure_and_its_warning_in_both_languages(demo_run: Path, tmp_path: Path) -> None:
    ok = try_tab.stops_html(demo_run, "final", "en")
    assert "tb-stops-ok" in ok and "of 32 answers" in ok and "&lt;|eot_id|&gt;" in ok
    run = tmp_path / "run"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("checkpoint-*", "final", "tensorboard"))
    result = json.loads((run / stops.STOPS_FILE).read_text(encoding="utf-8"))
    cause = "the pad token is the EOS token '</s>': padding is masked out of the loss, so the EOS may be too"
    result |= {"stopped": 3, "share": 3 / 32, "causes": [cause]}
    stops.write(run, result)
    warned = try_tab.stops_html(run, "final", "ja")
    assert (
        "tb-stops-warn" in warned
        and "32 件中 3 件(9%)" in warned
        and "止まらないことがよくあります" in warned
    )
    assert "学習用のプロンプト" in warned  # labelled: these prompts were trained on
    assert "<li>" in warned and "pad" in warned
    assert "まだありません" in try_tab.stops_html(run, "checkpoint-38", "ja")
