"""Bad input through the real CLI: one clear `error: <field>: <message>`, exit status 2, no traceback.

    .venv/bin/python -m pytest tests/test_bad_input.py -q

`plan` runs the same preflight as `train`, so most cases go through `plan`; the `train` cases also prove that
a refused config writes nothing (the run directory is never created).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli

DEMO = "presets/demo.yaml"
GEMMA = ["--model.name_or_path", "builtin:tiny-gemma", "--template.name", "gemma2"]


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def chat_jsonl(path: Path, messages: list[dict]) -> str:
    return write(path, json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


# (id, overrides built from a temporary folder, field path named by the error, words the message must hold)
CASES: list[tuple[str, Callable[[Path], list[str]], str, str]] = [
    (
        "malformed-csv",
        lambda d: ["--dataset.path", write(d / "bad.csv", 'prompt,completion\n"a,b\nc,d,e,f\n')],
        "dataset.path",
        "not well-formed CSV",
    ),
    (
        "malformed-json",
        lambda d: ["--dataset.path", write(d / "bad.json", '[{"prompt": "a", ')],
        "dataset.path",
        "not valid JSON",
    ),
    (
        "malformed-jsonl-line",
        lambda d: [
            "--dataset.path",
            write(d / "bad.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": \n'),
        ],
        "dataset.path",
        "line 2",
    ),
    (
        "not-utf8",
        lambda d: [
            "--dataset.path",
            write(d / "latin1.csv", "prompt,completion\ncafé,crème\n".encode("latin-1")),
        ],
        "dataset.path",
        "not UTF-8",
    ),
    ("empty-file", lambda d: ["--dataset.path", write(d / "empty.csv", "")], "dataset.path", "empty"),
    ("missing-file", lambda d: ["--dataset.path", str(d / "nope.csv")], "dataset.path", "does not exist"),
    (
        "missing-mapped-column",
        lambda d: ["--dataset.path", "builtin:sample-prompt-completion", "--dataset.columns.prompt", "nope"],
        "dataset.columns.prompt",
        "no column 'nope'",
    ),
    (
        "all-empty-column",
        lambda d: ["--dataset.path", write(d / "blank.csv", "prompt,completion\nhi,\nho,\n")],
        "dataset.columns.completion",
        "empty in every record",
    ),
    (
        "system-not-first-on-gemma2",
        lambda d: [
            "--dataset.path",
            chat_jsonl(
                d / "sys.jsonl",
                [
                    {"role": "user", "content": "Hi"},
                    {"role": "system", "content": "Be brief."},
                    {"role": "assistant", "content": "Hello."},
                ],
            ),
            *GEMMA,
        ],
        "template.name",
        "gemma2",
    ),
    (
        "token-in-vocabulary",
        lambda d: ["--tokens.add", '["<|eot_id|>"]'],
        "tokens.add[0]",
        "already in the vocab",
    ),
    ("empty-token", lambda d: ["--tokens.add", '[""]'], "tokens.add[0]", "empty"),
    (
        "negative-learning-rate",
        lambda d: ["--training.learning_rate", "-1e-4"],
        "training.learning_rate",
        "-0.0001",
    ),
    (
        "batch-size-zero",
        lambda d: ["--training.per_device_train_batch_size", "0"],
        "training.per_device_train_batch_size",
        "(got 0)",
    ),
    (
        "max-length-below-template",
        lambda d: ["--dataset.max_length", "16"],
        "dataset.max_length",
        "too short",
    ),
    (
        "model-path-missing",
        lambda d: ["--model.name_or_path", str(d / "no-such-model")],
        "model.name_or_path",
        "does not exist",
    ),
    (
        "unknown-builtin-model",
        lambda d: ["--model.name_or_path", "builtin:nope"],
        "model.name_or_path",
        "tiny-llama",
    ),
    ("unknown-template", lambda d: ["--template.name", "nope"], "template.name", "choose one of"),
    (
        "custom-template-syntax-error",
        lambda d: ["--template.name", "custom", "--template.custom", "{% if %}{{ bos_token }}"],
        "template.name",
        "syntax error",
    ),
    ("unknown-key", lambda d: ["--dataset.colums.prompt", "q"], "dataset.colums", "unknown key"),
    (
        "unknown-training-key",
        lambda d: ["--training.learning_rat", "1e-4"],
        "training.learning_rat",
        "learning_rate",
    ),
    (
        "forbidden-training-key",
        lambda d: ["--training.output_dir", "/tmp/x"],
        "training.output_dir",
        "--run-dir",
    ),
    ("unknown-preset", lambda d: ["--preset", "nope"], "preset", "qlora_paper"),
    ("qlora-on-cpu", lambda d: ["--method", "qlora"], "method", "CUDA GPU"),
    ("bf16-on-cpu", lambda d: ["--training.bf16", "true"], "training.bf16", "GPU"),
    ("fp16-on-cpu", lambda d: ["--training.fp16", "true"], "training.fp16", "CUDA GPU"),
]

# Refused by `train` too, before anything is written.
TRAIN_CASES = {
    "malformed-csv",
    "token-in-vocabulary",
    "system-not-first-on-gemma2",
    "qlora-on-cpu",
    "bf16-on-cpu",
}


def assert_one_clear_error(result, field: str, words: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {field}: "), errors[0]
    assert words in errors[0], errors[0]


@pytest.fixture(scope="module", autouse=True)
def _models_built(tiny_llama: str, tiny_gemma: str) -> None:
    """Build the tiny models once in this process, not in the first subprocess that needs each."""


@pytest.mark.parametrize(("build", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_refuses_with_the_field(tmp_path: Path, build, field: str, words: str):
    result = run_cli("plan", DEMO, *build(tmp_path))
    assert_one_clear_error(result, field, words)
    assert result.stdout == ""  # no half-printed report


@pytest.mark.parametrize(
    ("build", "field", "words"),
    [c[1:] for c in CASES if c[0] in TRAIN_CASES],
    ids=[c[0] for c in CASES if c[0] in TRAIN_CASES],
)
def test_train_refuses_before_writing_anything(tmp_path: Path, build, field: str, words: str):
    run_dir = tmp_path / "run"
    result = run_cli("train", DEMO, *build(tmp_path), "--run-dir", str(run_dir))
    assert_one_clear_error(result, field, words)
    assert not run_dir.exists()


def test_missing_config_file_is_one_clear_error(tmp_path: Path):
    result = run_cli("plan", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: config file {tmp_path / 'nope.yaml'} does not exist"


def test_config_file_with_a_bad_custom_template(tmp_path: Path):
    config = tmp_path / "custom.yaml"
    config.write_text(
        "template:\n  name: custom\n  custom: \"{% for m in messages %}{{ m['content'] }}\"\n",
        encoding="utf-8",
    )
    result = run_cli("plan", str(config))
    assert_one_clear_error(result, "template.name", "syntax error")
