"""`python -m finetune eval`: the tuned model against its base on held-out records (sft), and a classifier's
accuracy, macro-F1 and confusion matrix from scikit-learn; eval.json, TensorBoard, and the training-records
label when a run has no validation split. Real tiny runs, the real CLI.

    .venv/bin/pytest tests/test_evaluate.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

from finetune import evaluate, inference

DEMO = "presets/demo.yaml"


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> Path:
    run_dir = tmp_path_factory.mktemp("classifier") / "run"
    result = run_cli(
        "train", DEMO, "--task", "classification", "--dataset.path", "builtin:sample-sentiment",
        "--tokens.add", "[]", "--training.max_steps", "8", "--dataset.validation_split", "0.2",
        "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def scalars(run_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "eval"))
    events.Reload()
    return {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}


def test_the_tuned_model_is_measured_against_its_base_on_held_out_records(lora_run: Path) -> None:
    out = run_cli("eval", str(lora_run), "--samples", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((lora_run / "eval.json").read_text(encoding="utf-8"))
    assert out.stdout.startswith(f"eval ({result['records']} validation records): loss ")
    assert result["records_from"] == "validation" and result["note"] is None
    assert result["records"] == 30 and result["step"] == 6  # 10% of the 300 demo records; final/ at step 6
    tuned, base = result["tuned"], result["base"]
    assert tuned["loss"] < base["loss"]  # six steps of training lowered the held-out loss
    assert math.isclose(tuned["perplexity"], math.exp(tuned["loss"]), rel_tol=1e-9)
    assert [set(s) for s in result["samples"]] == [{"prompt", "reference", "tuned", "base"}] * 2
    assert result["samples"][0]["reference"]  # the data's own answer beside the two models'
    board = scalars(lora_run)
    assert board["eval/loss_tuned"] == pytest.approx(tuned["loss"], rel=1e-6)
    assert board["eval/loss_base"] == pytest.approx(base["loss"], rel=1e-6)


def test_without_a_validation_split_every_figure_says_it_comes_from_training_records(demo_run: Path) -> None:
    result = evaluate.run(demo_run, base=False, samples=0)
    assert result["records_from"] == "training" and result["records"] == 300
    assert "validation_split" in result["note"] and "base" not in result
    assert "note: this run has no validation split" in evaluate.summary(result)
    assert evaluate.read(demo_run) == json.loads(json.dumps(result))


def test_a_classifier_gets_accuracy_macro_f1_and_a_confusion_matrix(classifier_run: Path) -> None:
    out = run_cli("eval", str(classifier_run), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["labels"] == ["negative", "neutral", "positive"]
    matrix = result["confusion"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert sum(map(sum, matrix)) == result["records"] > 0
    diagonal = sum(matrix[i][i] for i in range(3))
    assert result["accuracy"] == pytest.approx(diagonal / result["records"])
    recalls = [row[i] / sum(row) if sum(row) else 0.0 for i, row in enumerate(matrix)]
    assert [c["recall"] for c in result["per_class"]] == pytest.approx(recalls)
    assert [c["support"] for c in result["per_class"]] == [sum(row) for row in matrix]
    assert 0.0 <= result["macro_f1"] <= 1.0
    png = (classifier_run / evaluate.CONFUSION_PNG).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    loaded = inference.load(classifier_run)  # the page's Try it agrees with the evaluation, record by record
    assert len(result["samples"]) >= 2
    for sample in result["samples"]:  # (a barely trained head may tie: compare the numbers)
        ranked = inference.classify(loaded, sample["text"])
        assert dict(ranked)[sample["predicted"]] == pytest.approx(sample["probability"], abs=1e-4)
        assert ranked[0][1] - sample["probability"] <= 1e-4
    assert scalars(classifier_run)["eval/accuracy"] == pytest.approx(result["accuracy"], rel=1e-6)


def test_eval_of_a_run_with_nothing_saved_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("task: sft\n", encoding="utf-8")
    out = run_cli("eval", str(tmp_path / "run"))
    assert out.returncode == 2 and "neither final/ nor a complete checkpoint" in out.stderr
    assert not (tmp_path / "run" / "eval.json").exists()
