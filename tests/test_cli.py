"""Tests for finetune/__main__.py: each subcommand as a user runs it (`python -m finetune ...`, a subprocess).

    .venv/bin/python -m pytest tests/test_cli.py -q

`render` must write exactly what the official template writes (copies under tests/fixtures/official_templates,
rendered here through transformers' own apply_chat_template), byte for byte, with no newline added.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from transformers import AutoTokenizer

from finetune import presets, templates

OFFICIAL_DIR = Path(__file__).parent / "fixtures" / "official_templates"
CONVERSATION = [
    {"role": "user", "content": "こんにちは！東京の天気はどうですか？"},
    {"role": "assistant", "content": "今日の東京は晴れです。"},
    {"role": "user", "content": "And tomorrow? Answer in English, please."},
    {"role": "assistant", "content": "Tomorrow it will rain,\nso take an umbrella."},
]
SUBCOMMANDS = ["train", "plan", "render", "tokens", "presets"]


def official_source(name: str) -> str:
    """The official template without the fixture's first `{#- source: ... -#}` line."""
    text = (OFFICIAL_DIR / f"{name}.jinja").read_text(encoding="utf-8")
    assert text.startswith("{#- source: ")
    return text.split("\n", 1)[1]


def official_render(tokenizer_path: str, name: str, messages: list[dict], **kwargs) -> str:
    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    return tok.apply_chat_template(messages, chat_template=official_source(name), tokenize=False, **kwargs)


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_each_subcommand(command: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m finetune {command}")
    if command in ("train", "plan", "render"):
        assert "default:" in result.stdout


@pytest.mark.parametrize("command", ["train", "plan"])
def test_help_lists_every_config_key_with_its_default(command: str):
    text = run_cli(command, "--help").stdout
    assert "--dataset.max_length (default: 1024)" in text
    assert "--training.learning_rate (default: None)" in text
    assert "--method (default: 'lora')" in text
    assert "Longest record in tokens after templating" in text  # the schema's description
    assert "--training.<any TrainingArguments / SFTConfig field>" in text


def test_top_level_help_names_the_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


# ---------------------------------------------------------------- render


def test_render_gemma2_matches_the_official_template(tiny_gemma: str):
    result = run_cli("render", "--template", "gemma2", "--bos", "<bos>", stdin=json.dumps(CONVERSATION))
    assert result.returncode == 0, result.stderr
    ours = templates.render(templates.load("gemma2"), CONVERSATION, bos_token="<bos>")
    assert result.stdout == ours  # exactly: no newline added, nothing else printed
    assert result.stdout == official_render(tiny_gemma, "gemma2", CONVERSATION)
    assert result.stdout.startswith("<bos><start_of_turn>user\nこんにちは")
    assert (
        "<start_of_turn>model\nTomorrow it will rain,\nso take an umbrella.<end_of_turn>\n" in result.stdout
    )


def test_render_llama31_matches_the_official_template(tiny_llama: str):
    stdin = json.dumps(CONVERSATION, ensure_ascii=False)
    result = run_cli("render", "--template", "llama3.1", "--bos", "<|begin_of_text|>", stdin=stdin)
    assert result.returncode == 0, result.stderr
    ours = templates.render(templates.load("llama3.1"), CONVERSATION, bos_token="<|begin_of_text|>")
    assert result.stdout == ours
    assert result.stdout == official_render(tiny_llama, "llama3.1", CONVERSATION)
    assert result.stdout.endswith("so take an umbrella.<|eot_id|>")  # the template's end, no newline after


def test_render_with_generation_prompt(tiny_llama: str):
    messages = CONVERSATION[:3]
    args = ["render", "--template", "llama3.1", "--bos", "<|begin_of_text|>", "--add-generation-prompt"]
    result = run_cli(*args, stdin=json.dumps(messages))
    assert result.returncode == 0, result.stderr
    assert result.stdout == official_render(tiny_llama, "llama3.1", messages, add_generation_prompt=True)
    assert result.stdout.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("stdin", ["[{'role': 'user'", '{"role": "user", "content": "hi"}', "[1, 2]"])
def test_render_refuses_bad_json(stdin: str):
    result = run_cli("render", "--template", "gemma2", stdin=stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: stdin: ")


def test_render_refuses_an_unknown_template():
    result = run_cli("render", "--template", "nope", stdin=json.dumps(CONVERSATION))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown template 'nope'" in result.stderr


def test_render_reports_a_template_that_raises():
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]
    result = run_cli("render", "--template", "gemma2", stdin=json.dumps(messages))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "alternate" in result.stderr


# ---------------------------------------------------------------- presets and tokens


def test_presets_lists_every_id():
    result = run_cli("presets")
    assert result.returncode == 0, result.stderr
    for kind in presets.KINDS:
        assert f"{kind}:" in result.stdout
        for name in presets.names(kind):
            assert f"  {name} " in result.stdout, name
    qlora = next(line for line in result.stdout.splitlines() if line.strip().startswith("qlora_paper"))
    assert "QLoRA paper" in qlora  # with its one-line description


def test_tokens_shows_pieces_before_and_after(tiny_llama: str):
    result = run_cli("tokens", "presets/demo.yaml", "--text", "Hello, <user_name>!")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert (
        lines["vocabulary:"] == "vocabulary: 1,799 -> 1,800 (1 new)"
    )  # <user_name> only: the family's reserved pad is used
    before = lines["before"].split(": ", 1)[1].split(" | ")
    after = lines["after"].split(": ", 1)[1].split(" | ")
    assert "<user_name>" in after and "<user_name>" not in before
    assert len(before) > len(after)
    assert "".join(before) == "".join(after) == "Hello, <user_name>!"


def test_tokens_with_an_override(tiny_llama: str):
    args = ["--tokens.add", '["<user_name>", "<order_id>"]']
    result = run_cli("tokens", "presets/demo.yaml", "--text", "<order_id> for <user_name>", *args)
    assert result.returncode == 0, result.stderr
    after = next(line for line in result.stdout.splitlines() if line.strip().startswith("after"))
    assert "<order_id>" in after and "<user_name>" in after
    assert "(2 new)" in result.stdout
