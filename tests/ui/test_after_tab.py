"""Section 7's Evaluate and Take it away (finetune/ui/after_tab.py, eval_view.py), without a browser: what a
request may name (a listed run, a Hub repo name, no token from the page), the real worker evaluating and
exporting a run, and the views escaping what comes from the data.

.venv/bin/pytest tests/ui/test_after_tab.py -q
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from finetune import config as cfg
from finetune import evaluate
from finetune.ui import eval_view, page, runs_tab, try_tab
from ui.test_bad_input_page import handler

HOSTILE = "<img src=x onerror=alert(1)>"


def plain(markdown: str) -> str:
    """A gr.Markdown's text as it reads once rendered (its backslash escapes gone)."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, demo_run: Path, lora_run: Path):
    """The real page over a data directory holding copies of the demo run and the LoRA run."""
    home = tmp_path_factory.mktemp("after-home")
    for name, run in (("20260101-000000-demo", demo_run), ("20260101-000001-lora", lora_run)):
        shutil.copytree(run, home / "runs" / name, ignore=shutil.ignore_patterns("export*", "eval*.json"))
    blocks, ctx = page.build_with_ctx(home)
    yield blocks, ctx
    ctx.try_.worker.close()


def test_an_export_request_names_a_listed_run_and_a_hub_repo_only(built, monkeypatch) -> None:
    blocks, ctx = built
    run_export = handler(blocks, "run_export")
    lora = ctx.runs_root / "20260101-000001-lora"
    for repo in ("../../etc", "a/b/c", HOSTILE, "org/", "/abs/path"):
        said = run_export(lora.name, "final", False, False, repo, True, "en")
        assert "is not a Hub repo name" in said and "<img" not in said
    assert "pick one" in plain(run_export("../" + lora.name, "final", False, False, "", True, "en"))
    assert "pick one" in plain(run_export(lora.name, "../../final", False, False, "", True, "en"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert "HF_TOKEN" in run_export(lora.name, "final", False, False, "me/model", True, "ja")
    assert not list(lora.glob("export*"))  # each refusal came before anything was written
    said = run_export(lora.name, "final", False, False, "", True, "en")  # in the real worker
    assert said.startswith(f"Written to `{lora / 'export'}`"), said
    assert "vLLM do not load such adapters" in plain(said)  # the note, on the page too
    assert (lora / "export" / "adapter_model.safetensors").is_file()
    again = plain(run_export(lora.name, "final", False, False, "", True, "en"))
    assert "exists and is not empty" in again and "Replace an earlier export" in again
    full = plain(run_export("20260101-000000-demo", "final", True, False, "", True, "en"))
    assert "nothing to merge" in full


def test_evaluate_in_the_worker_says_training_records_and_offers_a_split(built) -> None:
    blocks, ctx = built
    html, hold_out = handler(blocks, "run_eval")("20260101-000000-demo", "final", False, "en")
    assert "tb-eval-result" in html and "measured on 300 training records" in html
    assert "they flatter it" in html and hold_out["visible"] is True
    assert "base model" in html and "–" in html  # the base was not measured: a dash, not a number
    table, count, _ = runs_tab.table(ctx.runs_root, "en")
    listed = dict(zip(table.iloc[:, 0], table.iloc[:, -1], strict=True))
    assert listed["20260101-000000-demo"].endswith(" *") and "measured on training records" in count
    assert listed["20260101-000001-lora"] == "–"  # not evaluated yet


def test_two_runs_answer_side_by_side_and_only_listed_ones(built) -> None:
    """Try it's "beside another run": the second box holds the other run's final model, not a base."""
    blocks, ctx = built
    demo, lora = "20260101-000000-demo", "20260101-000001-lora"
    listed = try_tab.others(ctx.runs_root, lora, None)
    assert listed["choices"] == [("—", ""), (demo, demo)] and listed["value"] == ""
    assert try_tab.others(ctx.runs_root, lora, "../" + demo)["value"] == ""  # an unlisted pick is dropped
    settings = [cfg.field_info(path).default for path in try_tab.SETTINGS]
    settings[0] = 6  # max_new_tokens: a few tokens each are enough here
    send = handler(blocks, "send")
    *_, last = send(lora, "final", True, demo, "こんにちは", [], [], "en", *settings)
    tuned, other, _, status, _ = last
    assert "Tuned model:" in status and f"{demo}:" in status and "Base model" not in status
    assert other[-1]["role"] == "assistant" and tuned[-1]["role"] == "assistant"
    *_, refused = send(lora, "final", True, "../" + demo, "hi", [], [], "en", *settings)
    assert "pick one" in refused[3]


def test_the_views_escape_labels_and_answers() -> None:
    classes = [{"label": HOSTILE, "count": 3}, {"label": "ok", "count": 97}]
    balance = eval_view.class_balance(classes, 100, "en")
    assert "<img" not in balance and "&lt;img" in balance and "only 3% of the records" in balance
    result = {"task": "classification", "weights": "final", "records": 4, "records_from": "validation",
              "labels": [HOSTILE, "ok"], "accuracy": 0.5, "macro_f1": 0.4, "confusion": [[1, 1], [1, 1]],
              "per_class": [{"label": HOSTILE, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}],
              "samples": [{"text": HOSTILE, "true": "ok", "predicted": HOSTILE}], "note": None}  # fmt: skip
    html = eval_view.result_html(result, "ja")
    assert "<img" not in html and "正解率 0.500 · マクロF1 0.400" in html and "混同行列" in html
    assert eval_view.headline(result) == "acc 0.500 · F1 0.400"
    assert evaluate.headline(result) == {"accuracy": 0.5, "macro_f1": 0.4}
