"""Tests for finetune/plan.py: step arithmetic, `python -m finetune plan`, and a check against a real Trainer.

    .venv/bin/python -m pytest tests/test_plan.py -q

The arithmetic must match transformers' Trainer exactly, so the last test trains for real (a few seconds on
the tiny model) and compares the Trainer's own max_steps with the plan's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import cli, run_cli

from finetune import config, memory, plan

DEMO = "presets/demo.yaml"


def section(text: str, title: str) -> str:
    """The lines of one `== Title` section of the plan report."""
    after = text.split(f"== {title}\n", 1)[1]
    return after.split("\n== ", 1)[0]


# ---------------------------------------------------------------- arithmetic


def test_steps_per_epoch_and_in_all():
    s = plan.steps(10_000, batch_size=2, epochs=3)
    assert s.micro_batches_per_epoch == 5_000
    assert s.micro_batches == 15_000
    assert s.optimizer_steps == 15_000
    assert s.effective_batch == 2


def test_gradient_accumulation_divides_the_optimizer_steps():
    s = plan.steps(10_000, batch_size=2, epochs=3, grad_accum=2)
    assert s.micro_batches == 15_000
    assert s.updates_per_epoch == 2_500
    assert s.optimizer_steps == 7_500
    assert s.effective_batch == 4


def test_partial_batches_round_up_like_the_trainer():
    # 46 records / batch 4 = 12 micro-batches (the last one holds 2); / accumulation 5 = 3 updates (the last
    # one sums 2 micro-batches); 1.5 epochs = ceil(4.5) = 5 updates.
    s = plan.steps(46, batch_size=4, grad_accum=5, epochs=1.5)
    assert (s.micro_batches_per_epoch, s.updates_per_epoch, s.optimizer_steps) == (12, 3, 5)


def test_the_rounding_is_shown_where_it_happens():
    # Issue 8: batch 7, accumulation 4, 2.5 epochs. A person dividing 45 micro-batches by 4 expects 11
    # updates; the Trainer makes 18 micro-batches an epoch (the last holds 1 record), 5 updates an epoch (the
    # last sums 2) and ceil(2.5 x 5) = 13 updates: 2 whole epochs, then 3 updates of the third (48 in all).
    s = plan.steps(120, batch_size=7, grad_accum=4, epochs=2.5)
    assert (s.micro_batches_per_epoch, s.updates_per_epoch, s.optimizer_steps) == (18, 5, 13)
    assert (s.micro_batches, s.last_micro_batch, s.last_update, s.epochs_run) == (48, 1, 2, 2.67)
    assert plan.rounding(s) == {"micro": pytest.approx(120 / 7), "updates": 4.5, "total": 12.5}
    lines = "\n".join(plan.steps_lines(s))
    assert "= 17.14, rounded up: 18 micro-batches per epoch (the last holds only 1)" in lines
    assert "18 / 4 = 4.5, rounded up: 5 updates per epoch (the last sums only 2)" in lines
    assert (
        "x 2.5 epochs = 12.5, rounded up: 13 optimizer steps (48 micro-batches, 2.67 epochs of data)" in lines
    )
    even = plan.steps(10_000, batch_size=2, epochs=3, grad_accum=2)
    assert plan.rounding(even) == {} and "rounded" not in "\n".join(plan.steps_lines(even))


def test_devices_multiply_the_batch():
    s = plan.steps(10_000, batch_size=2, epochs=1, devices=4, grad_accum=2)
    assert s.micro_batches_per_epoch == 1_250
    assert s.effective_batch == 16
    assert s.optimizer_steps == 625


def test_warmup_ratio_and_steps():
    assert plan.steps(10_000, batch_size=2, epochs=3, warmup=0.03).warmup_steps == 450
    assert plan.steps(10_000, batch_size=2, epochs=3, warmup=0.05, grad_accum=2).warmup_steps == 375
    assert plan.steps(10_000, batch_size=2, epochs=3, warmup=100).warmup_steps == 100
    assert plan.steps(100, batch_size=10, epochs=1, warmup=1_000).warmup_steps == 10  # never past the end


def test_checkpoint_counts_per_strategy():
    base = {"batch_size": 2, "epochs": 3}
    assert plan.steps(10_000, **base, save_strategy="steps", save_steps=500).checkpoints == 30
    assert plan.steps(10_000, **base, save_strategy="steps", save_steps=0.25).checkpoints == 4
    assert plan.steps(10_000, **base, save_strategy="epoch").checkpoints == 3
    assert plan.steps(10_000, **base, save_strategy="no").checkpoints == 0


def test_max_steps_overrides_epochs():
    s = plan.steps(10_000, batch_size=2, epochs=3, max_steps=100, grad_accum=4)
    assert s.optimizer_steps == 100
    assert s.micro_batches == 400
    assert plan.steps(10_000, batch_size=2, epochs=3, max_steps=100, save_steps=30).checkpoints == 3


def test_no_records_means_no_steps():
    s = plan.steps(0, batch_size=2, epochs=3)
    assert (s.micro_batches, s.optimizer_steps, s.checkpoints) == (0, 0, 0)


def test_memory_estimate_counts_weights_optimizer_activations_and_the_runtime():
    gib = 2**30
    one = memory.Shape(params=gib, trainable=gib, hidden=1, layers=1)
    full = memory.memory_gb(
        one, weight_dtype="bf16", batch_size=1, seq_len=1, checkpointing=True, device_kind="cuda"
    )
    assert full["weights"] == pytest.approx(2)
    assert full["gradients_and_optimizer"] == pytest.approx(12)
    assert full["total"] == pytest.approx(14 + full["activations"] + memory.RUNTIME_GB["cuda"])
    lora = memory.memory_gb(
        memory.Shape(params=gib, trainable=0, hidden=1, layers=1),
        weight_dtype="4bit", batch_size=1, seq_len=1, checkpointing=True, device_kind="cuda",
    )  # fmt: skip
    assert lora["weights"] < 1 and lora["gradients_and_optimizer"] == 0
    # activations: every layer's set per token without checkpointing, each layer's input plus one set with it
    llama_7b = memory.Shape(params=0, trainable=0, hidden=4096, layers=32, kv_dim=4096, intermediate=11008)
    acts = {
        ckpt: memory.memory_gb(
            llama_7b, weight_dtype="bf16", batch_size=4, seq_len=2048, checkpointing=ckpt, device_kind="cuda"
        )["activations"]
        for ckpt in (False, True)
    }
    per_token = (32 * memory.layer_elements(llama_7b) + 4 * 4096) * 2  # bytes: bf16
    assert acts[False] == pytest.approx(4 * 2048 * per_token / gib)
    assert 10 < acts[False] / acts[True] < 20


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> Path:
    """10,000 prompt/completion records (and the tiny model built once, before any subprocess needs it)."""
    path = tmp_path_factory.mktemp("plan") / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "completion"])
        for i in range(10_000):
            writer.writerow([f"What is {i} + 1?", f"{i} + 1 = {i + 1}."])
    return path


def test_plan_cli_counts_micro_batches(big_csv: Path):
    args = ["--training.per_device_train_batch_size", "2", "--training.num_train_epochs", "3"]
    result = run_cli("plan", DEMO, "--dataset.path", str(big_csv), *args)
    assert result.returncode == 0, result.stderr
    steps = section(result.stdout, "Steps")
    assert "10,000 records" in steps
    assert "15,000 micro-batches" in steps
    assert "15,000 optimizer steps" in steps
    dataset = section(result.stdout, "Dataset")
    assert "prompt_completion" in dataset and "10000 records" in dataset


def test_plan_cli_with_gradient_accumulation(big_csv: Path):
    args = [
        "--training.per_device_train_batch_size", "2",
        "--training.num_train_epochs", "3",
        "--training.gradient_accumulation_steps", "2",
    ]  # fmt: skip
    result = cli("plan", DEMO, "--dataset.path", str(big_csv), *args)
    assert result.returncode == 0, result.stderr
    steps = section(result.stdout, "Steps")
    assert "15,000 micro-batches" in steps
    assert "7,500 optimizer steps" in steps
    assert "effective batch 4" in steps
    assert "warmup 375 steps" in steps  # the demo's warmup_ratio 0.05 of 7,500


def test_plan_json_is_the_step_arithmetic(big_csv: Path):
    args = ["--training.per_device_train_batch_size", "2", "--training.gradient_accumulation_steps", "2"]
    result = cli("plan", DEMO, "--json", "--dataset.path", str(big_csv), *args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == plan.steps(10_000, batch_size=2, epochs=3, grad_accum=2, warmup=0.05,
                              save_strategy="epoch").as_dict()  # fmt: skip


def test_plan_warns_about_records_over_max_length(tiny_llama: str):
    result = cli("plan", DEMO, "--dataset.max_length", "80")
    assert result.returncode == 0, result.stderr
    warnings = section(result.stdout, "Warnings")
    assert "longer than dataset.max_length (80)" in warnings
    assert "truncated" in warnings
    # The effect and the fix, not only the fact (issue 8).
    assert "loses its end and its end-of-turn token, so the model learns replies that never stop" in warnings
    assert "raise dataset.max_length to 128" in warnings and "remove the long records" in warnings
    relaxed = cli("plan", DEMO)
    assert "longer than dataset.max_length" not in relaxed.stdout


def test_plan_shows_the_effective_table_with_sources(tiny_llama: str):
    result = cli("plan", DEMO, "--training.learning_rate", "1e-4")
    assert result.returncode == 0, result.stderr
    table = section(result.stdout, "Effective configuration (value  <- source)")
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert rows["training.learning_rate"].endswith("0.0001  <- user")
    assert "<- library:" in rows["training.optim"]
    assert "False  <- tuneboard" in rows["training.bf16"]
    assert "<- user (warmup_ratio)" in rows["training.warmup_steps"]
    assert rows["dataset.validation_split"].endswith("<- default")
    assert "training.hub_token" not in rows
    assert "template: llama3.1; new tokens: ['<user_name>']" in result.stdout


def test_trust_remote_code_is_off_explicitly_and_warned_about_when_on(tiny_llama: str):
    from finetune import model

    assert model._common_kwargs(config.ModelConfig())["trust_remote_code"] is False  # never None: no prompt
    result = cli("plan", DEMO, "--model.trust_remote_code", "true")
    assert result.returncode == 0, result.stderr
    assert "model.trust_remote_code is on" in section(result.stdout, "Warnings")
    assert "trust_remote_code" not in section(cli("plan", DEMO).stdout, "Warnings")


# ---------------------------------------------------------------- token statistics


def test_every_records_lengths_are_what_the_trainer_encodes(monkeypatch: pytest.MonkeyPatch, tiny_llama: str):
    from finetune import encoding, preflight

    demo = config.load(DEMO, {"template.system_prompt": "Be brief.", "template.train_on": "all"})
    monkeypatch.setattr(preflight, "LENGTH_CHUNK", 64)  # several chunks, two at a time
    checked = preflight.run(demo, sample=50)  # the page's and plan's way: only the first records kept
    seen: list[tuple[int, int]] = []
    lengths = preflight.all_lengths(checked, lambda read, total: seen.append((read, total)))
    whole = preflight.run(demo)  # the trainer's: every record, in order (no validation split)
    encoded = encoding.tokenized(demo, whole, whole.dataset.train)
    assert lengths == [len(ids) for ids in encoded["input_ids"]] and len(lengths) == checked.dataset.n_records
    assert lengths[:50] == preflight.record_lengths(checked)
    assert preflight.all_lengths(checked, known=[-1] * 50) == [-1] * 50 + lengths[50:]  # not measured again
    assert seen[-1] == (len(lengths), len(lengths)) and len(seen) == -(-len(lengths) // 64)


def test_a_texts_length_is_its_tokens_and_its_end(monkeypatch: pytest.MonkeyPatch, tiny_llama: str):
    from finetune import preflight

    texts = config.load(DEMO, {"task": "text", "dataset.path": "builtin:sample-text", "tokens.add": []})
    monkeypatch.setattr(preflight, "LENGTH_CHUNK", 40)
    checked = preflight.run(texts, sample=10)
    whole = list(preflight.run(texts).dataset.train["text"])
    expected = [len(ids) + 1 for ids in checked.tokenizer(whole)["input_ids"]]  # + the end-of-text token
    assert preflight.all_lengths(checked) == expected


def test_statistics_cover_every_record_when_cheap_else_say_they_are_a_sample(
    big_csv: Path, monkeypatch: pytest.MonkeyPatch
):
    from finetune import preflight

    cfg = config.load(DEMO, {"dataset.path": str(big_csv)})
    checked = preflight.run(cfg, sample=plan.SAMPLE)
    every = plan.report(cfg, checked, plan.lengths(checked))["dataset"]["lengths"]
    assert every["count"] == every["records"] == 10_000
    assert "tokens per record: min" in plan.format_report(plan.report(cfg, checked, plan.lengths(checked)))
    monkeypatch.setattr(plan, "EVERY_RECORD_TOKENS", 10_000)  # as if the file were far bigger
    rep = plan.report(cfg, checked, plan.lengths(checked))
    assert (rep["dataset"]["lengths"]["count"], rep["dataset"]["lengths"]["records"]) == (2000, 10_000)
    assert "tokens per record (sampled 2,000 of 10,000 records): min" in plan.format_report(rep)
    assert plan.report(cfg, checked)["dataset"]["lengths"]["count"] == 2000  # Start's check: the sample
    assert not plan.every_record(cfg, {"count": 300, "records": 300, "mean": 20.0})


def test_a_record_past_the_first_ones_that_cannot_render_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_gemma: str
):
    from finetune import preflight, templates

    rows = [{"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": "Hey"}]}
            for i in range(90)]  # fmt: skip
    rows[70]["messages"] += [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "And?"}]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    overrides = {"model.name_or_path": "builtin:tiny-gemma", "template.name": "gemma2", "tokens.add": []}
    cfg = config.load(DEMO, {**overrides, "dataset.path": str(path)})
    monkeypatch.setattr(preflight, "LENGTH_CHUNK", 32)
    checked = preflight.run(cfg, sample=50)  # the first 50 render: the checks pass
    with pytest.raises(templates.TemplateError, match="record 71 of the usable ones"):
        preflight.all_lengths(checked)


# ---------------------------------------------------------------- against a real Trainer


def test_plan_matches_the_trainers_max_steps(tmp_path: Path, tiny_llama: str):
    overrides = [
        "--dataset.max_records", "46",
        "--training.per_device_train_batch_size", "4",
        "--training.gradient_accumulation_steps", "5",
        "--training.num_train_epochs", "1.5",
        "--training.save_strategy", "no",
        "--training.logging_steps", "1",
    ]  # fmt: skip
    planned = plan.report(config.load(DEMO, overrides))["steps"]
    assert planned.optimizer_steps == 5  # see test_partial_batches_round_up_like_the_trainer
    run_dir = tmp_path / "run"
    result = run_cli("train", DEMO, *overrides, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((run_dir / "final" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["max_steps"] == planned.optimizer_steps
    assert state["global_step"] == planned.optimizer_steps
    assert state["num_train_epochs"] == 2  # the Trainer's own ceil of 1.5 epochs
