"""Bad input never crashes Tuneboard: the table of bad inputs, run through the CLI and the environment.

    .venv/bin/pytest tests/test_bad_input.py -q                  # the CLI face (plan, train, jobs)
    .venv/bin/pytest tests/ui/test_bad_input_page.py -q          # the same table through the page

:data:`CASES` is THE table: files, templates, tokens, hyperparameters, model paths, config and the
environment. A refused case ends with one ``error: <field>: <message>`` line, exit status 2, no traceback and
nothing written; the message names the field and says what to do. ``plan`` runs the same preflight as
``train`` and as Start in the page, so most cases go through ``plan``; the ``train`` cases also prove that a
refused config writes nothing. The table goes through the CLI's own ``main`` in this process (conftest.cli:
a fresh interpreter's ~5 s of imports, paid once); a run that goes bad, and the process's own face (exit
status, no traceback), through ``python -m finetune`` itself. Environment cases (a full or read-only data
directory, a dataset that disappears before its job starts) run through ``scheduler.submit`` / ``python -m
finetune`` on a real small tmpfs when this process may mount one (root), else with the OS error injected.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, cli, run_cli

from finetune import builtin, jobs, runs, scheduler
from finetune import config as cfg
from finetune import status as st

DEMO = "presets/demo.yaml"
GEMMA = ["--model.name_or_path", "builtin:tiny-gemma", "--template.name", "gemma2"]
TOKEN = "hf_" + "Zq8Lm2Xw4Rt6Yp0Vb3Nc5Hd7Jf9Kg1Sa2De"  # the shape of a Hugging Face token, not a real one


@dataclass(frozen=True)
class Case:
    """One bad input. ``where``: both = CLI and page; cli = CLI only (``why``: what stops the page from
    expressing it); env = an environment case, elsewhere = covered by another file (``tests``: the tests that
    drive it, ``why``: how). ``outcome``: refused (exit 2, nothing written), accepted, or fails (the run
    starts and ends ``failed`` with a reason)."""

    id: str
    category: str
    build: Callable[[Path], list[str]] | None  # CLI overrides, built in a temporary folder
    field: str  # the config path the message names ('' = the data directory, which is no config field)
    words: str  # what the English message holds
    where: str = "both"
    why: str = ""
    tests: tuple[str, ...] = ()
    outcome: str = "refused"
    ja: str = ""  # what the Japanese message holds, for the cases the page checks in Japanese


def write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def chat_jsonl(path: Path, messages: list[dict]) -> str:
    return write(path, json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def model_without_tokenizer(folder: Path) -> list[str]:
    """The tiny model's config and weights only, as a checkpoint saved without its tokenizer looks."""
    folder.mkdir()
    source = Path(builtin.resolve("builtin:tiny-llama"))
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(source / name, folder / name)
    return ["--model.name_or_path", str(folder)]


def model_with_nan_weights(folder: Path) -> list[str]:
    """The tiny model with a NaN final norm: every logit is NaN, so the very first loss is NaN.

    A reliable NaN: a high learning rate on a 0.3M-parameter fp32 model with clipped gradients may never
    diverge within a test's few steps."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(builtin.resolve("builtin:tiny-llama"), folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.norm.weight"].fill_(float("nan"))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return ["--model.name_or_path", str(folder), "--training.max_steps", "3", "--training.logging_steps", "1"]


SLIDER = "the page's slider cannot go below 1, and gradio refuses a value out of its bounds"
LISTED = "the page offers only the listed {} (gradio refuses any other value of the dropdown)"
NO_FIELD = "the page has no field for an unknown key: its form is built from the schema"
WHERE = ("both", "cli", "env", "elsewhere")
OUTCOMES = ("refused", "accepted", "fails")
DISK_TESTS = (
    "tests/test_bad_input.py::test_data_directory_on_a_bad_disk",
    "tests/ui/test_bad_input_page.py::test_start_on_a_bad_disk",
)

CASES: list[Case] = [
    # ---------------------------------------------------------------- files (dataset.path)
    Case(
        "malformed-csv",
        "files",
        lambda d: ["--dataset.path", write(d / "bad.csv", 'prompt,completion\n"a,b\nc,d,e,f\n')],
        "dataset.path",
        "not well-formed CSV",
    ),
    Case(
        "malformed-json",
        "files",
        lambda d: ["--dataset.path", write(d / "bad.json", '[{"prompt": "a", ')],
        "dataset.path",
        "not valid JSON",
    ),
    Case(
        "json-object-not-list",
        "files",
        lambda d: ["--dataset.path", write(d / "one.json", '{"prompt": "Hi", "completion": "Hello"}')],
        "dataset.path",
        "not a list of records",
    ),
    Case(
        "malformed-jsonl-line",
        "files",
        lambda d: [
            "--dataset.path",
            write(d / "bad.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": \n'),
        ],
        "dataset.path",
        "line 2",
    ),
    Case(
        "not-utf8",
        "files",
        lambda d: [
            "--dataset.path",
            write(d / "latin1.csv", "prompt,completion\ncafé,crème\n".encode("latin-1")),
        ],
        "dataset.path",
        "not UTF-8",
        ja="UTF-8 のテキストではありません",
    ),
    Case(
        "empty-file",
        "files",
        lambda d: ["--dataset.path", write(d / "empty.csv", "")],
        "dataset.path",
        "is empty; add records",
    ),
    Case(
        "missing-file",
        "files",
        lambda d: ["--dataset.path", str(d / "nope.csv")],
        "dataset.path",
        "does not exist",
        ja="がありません",
    ),
    Case(
        "hub-dataset-offline",
        "files",
        lambda d: ["--dataset.path", "someorg/some-dataset"],
        "dataset.path",
        "HF_HUB_OFFLINE",
        ja="ダウンロードは無効",
    ),
    Case(
        "missing-mapped-column",
        "files",
        lambda d: ["--dataset.path", "builtin:sample-prompt-completion", "--dataset.columns.prompt", "nope"],
        "dataset.columns.prompt",
        "no column 'nope'",
    ),
    Case(
        "all-empty-column",
        "files",
        lambda d: ["--dataset.path", write(d / "blank.csv", "prompt,completion\nhi,\nho,\n")],
        "dataset.columns.completion",
        "empty in every record",
    ),
    Case(
        "csv-with-bom",
        "files",
        lambda d: [
            "--dataset.path",
            write(d / "excel.csv", "\ufeffprompt,completion\nHi,Hello.\nBye,See you.\n".encode()),
        ],
        "dataset.columns.prompt",
        "'prompt': 'prompt'",  # the first column is found by its clean name
        outcome="accepted",
    ),
    # ---------------------------------------------------------------- templates
    Case(
        "system-not-first-on-gemma2",
        "templates",
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
    Case(
        "unknown-template",
        "templates",
        lambda d: ["--template.name", "nope"],
        "template.name",
        "choose one of",
        where="cli",
        why=LISTED.format("templates"),
    ),
    Case(
        "custom-template-syntax-error",
        "templates",
        lambda d: ["--template.name", "custom", "--template.custom", "{% if %}{{ bos_token }}"],
        "template.name",
        "syntax error",
    ),
    # ---------------------------------------------------------------- tokens
    Case(
        "token-in-vocabulary",
        "tokens",
        lambda d: ["--tokens.add", '["<|eot_id|>"]'],
        "tokens.add[0]",
        "already in the vocab",
        ja="すでに語彙にあります",
    ),
    Case(
        "empty-token",
        "tokens",
        lambda d: ["--tokens.add", '[""]'],
        "tokens.add[0]",
        "empty",
        where="cli",
        why="the page's token table reads an empty row as no token at all",
    ),
    # ---------------------------------------------------------------- hyperparameters
    Case(
        "negative-learning-rate",
        "hyperparameters",
        lambda d: ["--training.learning_rate", "-1e-4"],
        "training.learning_rate",
        "-0.0001",
        ja="0 より大きい値",
    ),
    Case(
        "batch-size-zero",
        "hyperparameters",
        lambda d: ["--training.per_device_train_batch_size", "0"],
        "training.per_device_train_batch_size",
        "(got 0)",
        where="cli",
        why=SLIDER,
    ),
    Case(
        "max-length-below-template",
        "hyperparameters",
        lambda d: ["--dataset.max_length", "16"],
        "dataset.max_length",
        "too short",
    ),
    Case(
        "qlora-on-cpu",
        "hyperparameters",
        lambda d: ["--method", "qlora"],
        "method",
        "CUDA GPU",
        ja="CUDA の GPU が必要",
    ),
    Case("bf16-on-cpu", "hyperparameters", lambda d: ["--training.bf16", "true"], "training.bf16", "GPU"),
    Case(
        "fp16-on-cpu", "hyperparameters", lambda d: ["--training.fp16", "true"], "training.fp16", "CUDA GPU"
    ),
    Case(
        "nan-loss",
        "hyperparameters",
        model_with_nan_weights,
        "training.learning_rate",
        "loss became NaN/inf at step 1",
        where="cli",
        why="nothing to refuse up front: the run starts and ends failed; its status.json reason is what the "
        "run view shows (tests/ui/test_run_tab.py reads status the same way)",
        outcome="fails",
    ),
    # ---------------------------------------------------------------- model paths
    Case(
        "model-path-missing",
        "model paths",
        lambda d: ["--model.name_or_path", str(d / "no-such-model")],
        "model.name_or_path",
        "does not exist",
    ),
    Case(
        "model-without-tokenizer",
        "model paths",
        lambda d: model_without_tokenizer(d / "checkpoint"),
        "model.name_or_path",
        "has no tokenizer files",
        ja="トークナイザーのファイルがありません",
    ),
    Case(
        "hub-model-offline",
        "model paths",
        lambda d: ["--model.name_or_path", "someorg/some-model"],
        "model.name_or_path",
        "HF_HUB_OFFLINE",
    ),
    Case(
        "unknown-builtin-model",
        "model paths",
        lambda d: ["--model.name_or_path", "builtin:nope"],
        "model.name_or_path",
        "tiny-llama",
    ),
    # ---------------------------------------------------------------- config keys and values
    Case(
        "hf-token-in-config",
        "config",
        lambda d: ["--training.hub_model_id", TOKEN],
        "training.hub_model_id",
        "HF_TOKEN environment variable",
        ja="HF_TOKEN",
    ),
    Case(
        "unknown-key",
        "config",
        lambda d: ["--dataset.colums.prompt", "q"],
        "dataset.colums",
        "unknown key",
        where="cli",
        why=NO_FIELD,
    ),
    Case(
        "unknown-training-key",
        "config",
        lambda d: ["--training.learning_rat", "1e-4"],
        "training.learning_rat",
        "learning_rate",
        where="cli",
        why=NO_FIELD,
    ),
    Case(
        "forbidden-training-key",
        "config",
        lambda d: ["--training.output_dir", "/tmp/x"],
        "training.output_dir",
        "--run-dir",
        where="cli",
        why="the page has no output_dir field: Tuneboard picks the run directory",
    ),
    Case(
        "unknown-preset",
        "config",
        lambda d: ["--preset", "nope"],
        "preset",
        "qlora_paper",
        where="cli",
        why="the page has no preset field: its preset buttons apply presets that exist",
    ),
    # ---------------------------------------------------------------- the environment
    Case(
        "data-directory-full",
        "environment",
        None,
        "",
        "the disk is full",
        where="env",
        why="scheduler.submit, python -m finetune start and Start in the page, on a small tmpfs",
        tests=DISK_TESTS,
        ja="ディスクがいっぱい",
    ),
    Case(
        "data-directory-read-only",
        "environment",
        None,
        "",
        "read-only",
        where="env",
        why="scheduler.submit, python -m finetune start and Start in the page, on a small tmpfs",
        tests=DISK_TESTS,
        ja="読み取り専用",
    ),
    Case(
        "dataset-gone-before-the-job-starts",
        "environment",
        None,
        "dataset.path",
        "does not exist",
        where="env",
        why="queued behind a busy slot, the file deleted, then the job spawned (or Resume in the page)",
        tests=(
            "tests/test_bad_input.py::test_dataset_gone_before_spawn",
            "tests/ui/test_bad_input_page.py::test_resume_after_the_dataset_is_gone",
        ),
    ),
    Case(
        "upload-over-the-limit",
        "environment",
        None,
        "dataset.path",
        "413",
        where="elsewhere",
        why="the server answers HTTP 413 before the body is stored; the upload store refuses it too",
        tests=(
            "tests/ui/test_security.py::test_uploads_over_the_limit_are_refused_by_the_server",
            "tests/test_uploads.py::test_oversize_refused",
        ),
    ),
]

# Refused by `train` too, before anything is written.
TRAIN_CASES = {
    "malformed-csv",
    "token-in-vocabulary",
    "system-not-first-on-gemma2",
    "qlora-on-cpu",
    "bf16-on-cpu",
    "model-without-tokenizer",
    "hf-token-in-config",
}


def cases(outcome: str = "refused", where: tuple[str, ...] = ("both", "cli")) -> list:
    """pytest params (id = the case id) of the table's rows with this outcome."""
    rows = [c for c in CASES if c.outcome == outcome and c.where in where]
    return [pytest.param(c, id=c.id) for c in rows]


def assert_one_clear_error(result, field: str, words: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {field}: " if field else "error: "), errors[0]
    assert words in errors[0], errors[0]


@pytest.fixture(scope="module", autouse=True)
def _models_built(tiny_llama: str, tiny_gemma: str) -> None:
    """Build the tiny models once in this process, not in the first subprocess that needs each."""


def test_the_table_covers_every_kind_of_bad_input() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    kinds = {"files", "templates", "tokens", "hyperparameters", "model paths", "config", "environment"}
    assert {c.category for c in CASES} == kinds
    for case in CASES:
        assert case.where in WHERE and case.outcome in OUTCOMES, case.id
        assert case.where == "both" or case.why, f"{case.id}: say why the page does not test it"
        assert bool(case.tests) == (case.where in ("env", "elsewhere")), case.id
        assert (case.build is None) == bool(case.tests), case.id
        for ref in case.tests:
            path, name = ref.split("::")
            assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), ref


@pytest.mark.parametrize("case", cases())
def test_plan_refuses_with_the_field(tmp_path: Path, case: Case):
    result = cli("plan", DEMO, *case.build(tmp_path))
    assert_one_clear_error(result, case.field, case.words)
    assert result.stdout == ""  # no half-printed report
    assert TOKEN not in result.stderr  # a secret is named by its field, never echoed


@pytest.mark.parametrize("case", [p for p in cases() if p.id in TRAIN_CASES])
def test_train_refuses_before_writing_anything(tmp_path: Path, case: Case):
    run_dir = tmp_path / "run"
    result = cli("train", DEMO, *case.build(tmp_path), "--run-dir", str(run_dir))
    assert_one_clear_error(result, case.field, case.words)
    assert not run_dir.exists()


@pytest.mark.parametrize("case", cases("accepted"))
def test_plan_accepts(tmp_path: Path, case: Case):
    result = cli("plan", DEMO, *case.build(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert case.words in result.stdout and "\ufeff" not in result.stdout


@pytest.mark.parametrize("case", cases("fails"))
def test_a_run_that_goes_bad_ends_failed_with_the_reason(tmp_path: Path, case: Case):
    run_dir = tmp_path / "run"
    result = run_cli("train", DEMO, *case.build(tmp_path / "input"), "--run-dir", str(run_dir))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    status = st.read(run_dir)
    assert status["state"] == "failed" and case.words in status["reason"], status
    assert case.field in status["reason"]  # the fix names the field to change
    assert not (run_dir / "final").exists()  # no finished-looking model
    assert runs.list_runs(tmp_path)[0].state == "failed"


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
    result = cli("plan", str(config))
    assert_one_clear_error(result, "template.name", "syntax error")


# ---------------------------------------------------------------- the environment


def row(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def _mount(path: Path, options: str) -> bool:
    """A real tmpfs at ``path``; False where this process may not mount (not root, no mount command)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    args = ["mount", "-t", "tmpfs", "-o", options, "tuneboard-test", str(path)]
    return subprocess.run(args, capture_output=True).returncode == 0


def _fill(path: Path) -> None:
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _inject(monkeypatch: pytest.MonkeyPatch, home: Path, code: int) -> None:
    """Without a mount: every directory and file created under ``home`` fails with ``code``."""
    real_mkdir, real_write = Path.mkdir, Path.write_text

    def refuse(real):
        def call(self: Path, *args, **kwargs):
            if self.is_relative_to(home) and not self.exists():
                raise OSError(code, os.strerror(code), str(self))
            return real(self, *args, **kwargs)

        return call

    monkeypatch.setattr(Path, "mkdir", refuse(real_mkdir))
    monkeypatch.setattr(Path, "write_text", refuse(real_write))


@contextmanager
def bad_disk(home: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> Iterator[bool]:
    """``home`` on a full (``kind='full'``) or read-only small tmpfs that already holds ``runs/``; yields
    whether the disk is real (a subprocess sees it too) or the error is injected into this process."""
    home.mkdir(parents=True, exist_ok=True)
    real = _mount(home, "size=256k")
    try:
        runs.runs_root(home).mkdir()
        if not real:
            _inject(monkeypatch, home, errno.ENOSPC if kind == "full" else errno.EROFS)
        elif kind == "full":
            _fill(home)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        yield real
    finally:
        if real:
            subprocess.run(["umount", "-l", str(home)], check=False)


def leftovers(root: Path) -> list[str]:
    """What a refused Start may not leave: a run directory, or a hidden half-built one."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def jobs_cli(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "finetune", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


DISKS = [("full", "data-directory-full"), ("read-only", "data-directory-read-only")]


@pytest.mark.parametrize(("kind", "case_id"), DISKS)
def test_data_directory_on_a_bad_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, case_id: str
):
    bad = row(case_id)
    home = tmp_path / "home"
    with bad_disk(home, monkeypatch, kind) as real:
        with pytest.raises(jobs.JobError) as info:
            scheduler.submit(cfg.load(ROOT / DEMO), runs.runs_root(home))
        assert bad.words in str(info.value) and "TUNEBOARD_HOME" in str(info.value)
        assert leftovers(runs.runs_root(home)) == []
        if real:  # the CLI face: one line, exit status 2
            result = jobs_cli("start", DEMO, "--home", str(home))
            assert_one_clear_error(result, "", bad.words)
            assert leftovers(runs.runs_root(home)) == []


def test_train_onto_a_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    with bad_disk(home, monkeypatch, "full") as real:
        if not real:
            pytest.skip("the trainer is a subprocess: it needs a real full disk")
        result = run_cli("train", DEMO, "--run-dir", str(runs.runs_root(home) / "r1"))
        assert_one_clear_error(result, "", row("data-directory-full").words)
        assert leftovers(runs.runs_root(home)) == []


def wait_for(run_dir: Path, states: tuple[str, ...], timeout: float = 120.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.reconcile(run_dir)
        if status.get("state") in states:
            return status
        time.sleep(0.3)
    raise AssertionError(f"{run_dir.name} never reached {states}: {st.read(run_dir)}")


def hold_the_slot(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One cpu slot, taken by a live run (this test process plays its trainer)."""
    from finetune import procs

    monkeypatch.setenv("TUNEBOARD_SLOTS", "cpu")
    holder = root / "holder"
    holder.mkdir(parents=True)
    status = {"state": "running", "slot": "cpu", "run_id": "holder", **procs.identity(os.getpid())}
    st.write_json_atomic(holder / "status.json", status)
    return holder


def test_dataset_gone_before_spawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start queues the run (the slot is busy), the file is deleted, the slot frees: the job refuses to
    train and the run ends failed naming dataset.path; Resume says the same before queueing anything."""
    root = runs.runs_root(tmp_path / "home")
    holder = hold_the_slot(root, monkeypatch)
    data = Path(write(tmp_path / "chats.csv", "prompt,completion\nHi,Hello.\nBye,See you.\n"))
    config = cfg.load(ROOT / DEMO, {"dataset.path": str(data), "training.max_steps": 1})
    run_dir = scheduler.submit(config, root)
    assert st.read(run_dir)["state"] == st.QUEUED
    data.unlink()
    st.update(holder, state="finished")
    assert scheduler.tick(root) == [run_dir.name]
    status = wait_for(run_dir, st.FINAL_STATES)
    bad = row("dataset-gone-before-the-job-starts")
    assert status["state"] == "failed" and status["reason"].startswith(f"{bad.field}: ")
    assert bad.words in status["reason"] and str(data) in status["reason"]
    assert not (run_dir / "final").exists()
    result = jobs_cli("resume", str(run_dir))
    assert_one_clear_error(result, bad.field, bad.words)
    assert st.read(run_dir)["state"] == "failed"  # left as it was
