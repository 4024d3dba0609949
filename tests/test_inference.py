"""A trained run answers (finetune/inference.py, `python -m finetune chat`): its own template, tokens and
weights, final/ or a checkpoint, and the base model beside it.

    .venv/bin/pytest tests/test_inference.py -q      # ~1 min: one demo run, one short LoRA run

The demo run is trained through the CLI as a user would (its stop check included, tests/test_stops.py reads
what it wrote); the answers come from the real generate() of the tiny model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from test_jobs import demo

from finetune import inference, jobs, templates
from finetune.errors import JobError

DEMO = "presets/demo.yaml"


def test_the_prompt_is_the_training_format_with_the_new_token_whole(demo_run: Path) -> None:
    loaded = inference.load(demo_run)
    assert loaded.weights == "final" and loaded.device == "cpu"
    messages = [{"role": "user", "content": "Hello, <user_name>!"}]
    ids = inference.prompt_ids(loaded, messages)
    expected = templates.render(
        loaded.template, messages, add_generation_prompt=True, **templates.special_tokens(loaded.tokenizer)
    )
    assert loaded.tokenizer.decode(ids) == expected
    assert expected.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert loaded.tokenizer.convert_tokens_to_ids("<user_name>") in ids  # one token, as it trained
    eot = loaded.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert loaded.stop_ids[0] == eot


def test_an_answer_streams_and_says_how_it_ended(demo_run: Path) -> None:
    loaded = inference.load(demo_run)
    settings = inference.greedy(loaded.config.generation).model_copy(update={"max_new_tokens": 24})
    items = list(inference.stream(loaded, "What is the capital of Kenya?", settings))
    *pieces, reply = items
    assert isinstance(reply, inference.Reply) and all(isinstance(p, str) for p in pieces)
    assert reply.text == "".join(pieces) and 0 < reply.tokens <= 24
    assert reply.stopped == (reply.tokens < 24 or reply.stopped)  # cut at the limit unless a stop token came
    assert reply.first_token_seconds is not None and reply.first_token_seconds <= reply.seconds
    again = inference.answer(loaded, "What is the capital of Kenya?", settings)
    assert again.text == reply.text  # greedy: the same answer every time


def test_chat_on_the_command_line_from_the_run_and_from_its_base(demo_run: Path) -> None:
    short = ["--generation.max_new_tokens", "16", "--generation.temperature", "0"]
    turns = run_cli("chat", str(demo_run), *short, stdin="こんにちは、調子はどう?\n/reset\nHello\n")
    assert turns.returncode == 0, turns.stderr[-2000:]
    assert "final · cpu" in turns.stderr and turns.stderr.count("first token") == 2  # /reset is no turn
    base = run_cli("chat", str(demo_run), "--base", "--prompt", "こんにちは", *short)
    assert base.returncode == 0, base.stderr[-2000:]
    assert "base · cpu" in base.stderr and "first token" in base.stderr


def test_a_checkpoint_answers_and_a_missing_one_is_named(demo_run: Path) -> None:
    assert inference.load(demo_run, checkpoint=38).weights == "checkpoint-38"
    with pytest.raises(
        JobError, match=r"no complete checkpoint-5 \(complete: checkpoint-38, checkpoint-76, checkpoint-114\)"
    ):
        inference.weights_dir(demo_run, 5)


def test_bad_generation_settings_are_refused_by_name(demo_run: Path) -> None:
    hot = run_cli("chat", str(demo_run), "--prompt", "x", "--generation.temperature", "5")
    assert hot.returncode == 2 and "generation.temperature" in hot.stderr
    other = run_cli("chat", str(demo_run), "--prompt", "x", "--training.learning_rate", "1")
    assert other.returncode == 2 and "only generation.* settings apply" in other.stderr


def test_a_run_with_nothing_saved_yet_is_refused(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = jobs.create(demo(), tmp_path / "runs")  # queued, never trained
    with pytest.raises(JobError, match="neither final/ nor a complete checkpoint"):
        inference.load(run_dir)
    out = run_cli("chat", str(run_dir), "--prompt", "x")
    assert out.returncode == 2 and "neither final/ nor a complete checkpoint" in out.stderr


def test_a_lora_adapter_with_a_new_token_reloads_on_its_base(lora_run: Path) -> None:
    """The adapter folder carries the resized embeddings (tokens.train_new_rows): reloaded on a fresh base,
    the new token's row is the trained one, not a new random row."""
    from safetensors.torch import load_file

    run_dir = lora_run
    loaded = inference.load(run_dir)
    token = loaded.tokenizer.convert_tokens_to_ids("<user_name>")
    saved = load_file(str(run_dir / "final" / "adapter_model.safetensors"))
    (key,) = [k for k in saved if k.endswith("embed_tokens.weight")]
    row = loaded.net.get_input_embeddings().weight[token].detach()
    assert row.shape == saved[key][token].shape and (row == saved[key][token]).all()
    assert (
        inference.answer(
            loaded, "Hi", inference.greedy(loaded.config.generation).model_copy(update={"max_new_tokens": 4})
        ).tokens
        > 0
    )
