"""End-to-end tests of finetune/train.py and finetune/callbacks.py: real training subprocesses on tiny models.

    .venv/bin/python -m pytest tests/test_train.py -q --durations=10

One demo run (presets/demo.yaml, ~15 s on 2 CPU cores) is shared by the module; the other tasks, the stop
on SIGTERM and the resume each train for a few steps. Everything is asserted on the run directory, the way
the dashboard reads it.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT, run_cli

DEMO = "presets/demo.yaml"
EOT = "<|eot_id|>"
# The demo: every sample chat, batch 8, 3 epochs, a checkpoint per epoch.
RECORDS = len((ROOT / "presets" / "data" / "sample-chat.jsonl").read_text(encoding="utf-8").splitlines())
PER_EPOCH = math.ceil(RECORDS / 8)
MAX_STEPS = 3 * PER_EPOCH


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in metrics(run_dir) if "loss" in row]


# ---------------------------------------------------------------- the demo run directory


def test_run_directory_holds_the_config_and_the_template(demo_run: Path):
    saved = yaml.safe_load((demo_run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["model"]["name_or_path"] == "builtin:tiny-llama"
    assert saved["tokens"]["add"] == ["<user_name>"]
    eff = yaml.safe_load((demo_run / "effective_config.yaml").read_text(encoding="utf-8"))
    assert eff["training"]["learning_rate"] == pytest.approx(3e-3)
    assert eff["training"]["optim"]  # library defaults are written too
    assert eff["training"]["bf16"] is False
    assert eff["dataset"]["max_length"] == 256
    template = (ROOT / "presets" / "templates" / "llama3.1.jinja").read_text(encoding="utf-8")
    assert (demo_run / "template.jinja").read_text(encoding="utf-8") == template


def test_status_says_finished_with_every_step(demo_run: Path):
    status = read_json(demo_run / "status.json")
    assert status["state"] == "finished"
    assert isinstance(status["pid"], int) and status["pid"] > 0
    assert status["started_at"] <= status["ended_at"]
    assert status["max_steps"] == MAX_STEPS
    assert status["step"] == status["max_steps"]
    assert status["final"] == "final"


def test_train_log_has_one_line_per_logging_step(demo_run: Path):
    log = (demo_run / "train.log").read_text(encoding="utf-8")
    assert f"step 2/{MAX_STEPS}" in log and f"step {MAX_STEPS}/{MAX_STEPS}" in log
    assert "finished:" in log
    assert "Traceback" not in log and "Warning" not in log  # e.g. a deprecated name passed to the library


def test_metrics_rows_carry_progress_and_throughput(demo_run: Path):
    rows = metrics(demo_run)
    logged = [row for row in rows if "loss" in row]
    assert [row["step"] for row in logged] == list(range(2, MAX_STEPS + 1, 2))  # logging_steps 2
    for row in logged:
        assert {"step", "epoch", "loss", "learning_rate", "grad_norm", "elapsed"} <= set(row)
    assert (
        sum("tokens_per_second" in row and row["tokens_per_second"] > 0 for row in logged) >= len(logged) - 1
    )
    elapsed = [row["elapsed"] for row in logged]
    assert elapsed == sorted(elapsed)
    assert logged[-1]["epoch"] == pytest.approx(3.0)


def test_tensorboard_events_hold_the_loss(demo_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((demo_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    assert len(acc.Scalars("train/loss")) == len(losses(demo_run))


def test_checkpoints_and_final_folder(demo_run: Path):
    checkpoints = sorted(demo_run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == [f"checkpoint-{PER_EPOCH * e}" for e in (1, 2, 3)]
    for checkpoint in checkpoints:
        assert read_json(checkpoint / "trainer_state.json")["global_step"] == int(
            checkpoint.name.split("-")[1]
        )
    final = demo_run / "final"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (final / name).is_file(), name
    state = read_json(final / "trainer_state.json")
    assert state["global_step"] == state["max_steps"] == MAX_STEPS


def test_loss_falls(demo_run: Path):
    values = losses(demo_run)
    assert len(values) >= 10
    last = sum(values[-5:]) / 5
    assert last < 0.6 * values[0], values


def test_new_token_is_one_token_in_the_saved_tokenizer(demo_run: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_run / "final")
    assert tok.tokenize("Hello, <user_name>!").count("<user_name>") == 1
    assert len(tok.encode("<user_name>", add_special_tokens=False)) == 1
    assert tok.pad_token == "<|finetune_right_pad_id|>" and tok.pad_token != tok.eos_token


def test_final_model_reloads_and_answers_until_end_of_turn(demo_run: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = demo_run / "final"
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    messages = [{"role": "user", "content": "What is the capital of Kenya?"}]
    prompt = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert tok.decode(prompt["input_ids"][0]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    eot = tok.convert_tokens_to_ids(EOT)
    with torch.no_grad():
        out = model.generate(
            **prompt, max_new_tokens=40, do_sample=False, eos_token_id=eot, pad_token_id=tok.pad_token_id
        )
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert new[-1] == eot, tok.decode(new)
    assert tok.decode(new[:-1], skip_special_tokens=True).strip()  # some text before the end of turn


# ---------------------------------------------------------------- other tasks


def test_text_task_trains_on_plain_text(tmp_path: Path, tiny_llama: str):
    run_dir = tmp_path / "run"
    result = run_cli(
        "train", DEMO,
        "--task", "text",
        "--dataset.path", "builtin:sample-text",
        "--dataset.max_records", "64",
        "--training.max_steps", "6",
        "--training.logging_steps", "1",
        "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    status = read_json(run_dir / "status.json")
    assert status["state"] == "finished" and status["step"] == 6
    assert len(losses(run_dir)) == 6
    assert not (run_dir / "template.jinja").exists()  # no chat template for plain text
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_classification_task_saves_a_classifier_with_labels(tmp_path: Path, tiny_llama: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = tmp_path / "run"
    result = run_cli(
        "train", DEMO,
        "--task", "classification",
        "--dataset.path", "builtin:sample-sentiment",
        "--tokens.add", "[]",
        "--training.max_steps", "4",
        "--training.logging_steps", "1",
        "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_json(run_dir / "status.json")["state"] == "finished"
    final = run_dir / "final"
    model = AutoModelForSequenceClassification.from_pretrained(final)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.label2id == {"negative": 0, "neutral": 1, "positive": 2}
    tok = AutoTokenizer.from_pretrained(final)
    batch = tok(["This game made my day.", "コーヒーは最悪でした。"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)


# ---------------------------------------------------------------- stop and resume


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"training exited with {proc.returncode} before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_sigterm_stops_with_a_checkpoint_and_resume_finishes(tmp_path: Path, tiny_llama: str):
    run_dir = tmp_path / "run"
    args = [
        "--training.max_steps", "150",
        "--training.per_device_train_batch_size", "2",
        "--training.logging_steps", "1",
        "--training.save_strategy", "no",
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    log = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "finetune", "train", DEMO, *args],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        status_path = run_dir / "status.json"

        def running_past_step_2() -> bool:
            status = read_json(status_path) if status_path.is_file() else {}
            return status.get("state") == "running" and (status.get("step") or 0) >= 2

        wait_for(running_past_step_2, 120, "step 2", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    status = read_json(run_dir / "status.json")
    assert status["state"] == "stopped"
    assert status["pid"] == proc.pid
    stop_step = status["step"]
    assert 2 <= stop_step < 150
    checkpoint = run_dir / status["checkpoint"]
    assert checkpoint.name == f"checkpoint-{stop_step}"
    assert read_json(checkpoint / "trainer_state.json")["global_step"] == stop_step
    assert not (run_dir / "final").exists()
    assert "received SIGTERM" in (run_dir / "train.log").read_text(encoding="utf-8")

    result = run_cli("train", str(run_dir / "config.yaml"), "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    status = read_json(run_dir / "status.json")
    assert status["state"] == "finished"
    assert status["step"] == status["max_steps"] == 150
    state = read_json(run_dir / "final" / "trainer_state.json")
    assert state["global_step"] == state["max_steps"] == 150
    steps = [row["step"] for row in metrics(run_dir) if "loss" in row]
    before, after = steps[: steps.index(stop_step) + 1], steps[steps.index(stop_step) + 1 :]
    assert before == list(range(1, stop_step + 1))
    assert after == list(range(stop_step + 1, 151))  # continued from the checkpoint, not from step 1


def test_default_run_dir_is_under_tuneboard_home(home: Path):
    from finetune import config, train

    run_dir = train.default_run_dir(config.load(DEMO))
    assert run_dir.parent == home / "runs"
    assert run_dir.name.endswith("-sft-tiny-llama")
