"""Shared test set-up: an isolated cache and data home, and the tiny models built once per session.

Every test runs offline: HF_HUB_OFFLINE is set before transformers/datasets are imported, and the models are
built locally by finetune.builtin through the same loading code that training uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tuneboard-tests-"))
os.environ.setdefault("TUNEBOARD_CACHE", str(_SESSION_DIR / "cache"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
# One compute thread per process (the test process and every trainer, app and worker it starts): the suite
# runs two pytest workers on a 2-core machine, and a trainer with two threads on a shared core waits at each
# parallel region for the thread that lost its turn (the demo trained in 15.3 s instead of 6.6 s beside a
# busy core). The tiny models train as fast on one thread; bench/ measures the real settings.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the tests' ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The browser tests run one after another on one pytest worker (each drives a real app and chromium,
    which take a core between them); the other tests share the two workers (``-n 2 --dist loadgroup``)."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("browser"))


@pytest.fixture(scope="session")
def tiny_llama() -> str:
    """Folder of the Llama-shaped tiny model (untied embeddings, Llama 3.1 format)."""
    from finetune import builtin

    return builtin.resolve("builtin:tiny-llama")


@pytest.fixture(scope="session")
def tiny_gemma() -> str:
    """Folder of the Gemma-2-shaped tiny model (tied embeddings, Gemma 2 format)."""
    from finetune import builtin

    return builtin.resolve("builtin:tiny-gemma")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TUNEBOARD_HOME for runs and uploads."""
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> Path:
    """The demo config trained to the end through the CLI, as `python -m finetune train presets/demo.yaml`
    (its stop check included); shared by the tests that read a finished run (test_train, test_inference,
    test_stops)."""
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    result = run_cli("train", "presets/demo.yaml", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"finished: {run_dir / 'final'}" in result.stdout
    return run_dir


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str) -> Path:
    """The demo as a LoRA run with its new token <user_name> and a validation split, 6 steps: an adapter
    that carries trained embedding rows (shared by test_inference, test_evaluate and test_export)."""
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    result = run_cli(
        "train", "presets/demo.yaml", "--method", "lora", "--training.max_steps", "6",
        "--dataset.validation_split", "0.1", "--after.stop_check_prompts", "8", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def free_port() -> int:
    """A TCP port free on loopback right now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict | None = None, stdin: str | None = None, timeout: int = 300
):
    """Run ``python -m finetune ...`` as a real subprocess, as a user (and the dashboard) would."""
    import subprocess

    full_env = os.environ | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "finetune", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(*args: str, stdin: str | None = None):
    """``python -m finetune ...`` in this process: the same ``finetune.__main__.main``, its parser, checks
    and messages, without a fresh interpreter's ~5 s of imports (torch, transformers, trl). For the verbs that
    refuse or report; a run that trains, and the tests of the process itself (its exit status, no traceback
    printed), go through :func:`run_cli`."""
    import contextlib
    import io
    import subprocess

    from finetune.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        saved, sys.stdin = sys.stdin, io.StringIO(stdin or "")
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's refusals
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdin = saved
    argv = ["python", "-m", "finetune", *args]
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


OAUTH_SECRET = "space-oauth-secret"
SPACE_OAUTH = {  # what a Space with hf_oauth: true sets (SPACE_ID's owner is the one let in by default)
    "SYSTEM": "spaces",
    "SPACE_ID": "ada/tuneboard",
    "SPACE_AUTHOR_NAME": "ada",
    "OAUTH_CLIENT_ID": "client-id",
    "OAUTH_CLIENT_SECRET": OAUTH_SECRET,
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "https://huggingface.co",
}


def session_cookie(username: str, expires_in: float = 3600, secret: str = OAUTH_SECRET) -> str:
    """What Gradio's OAuth callback stores, signed as starlette's SessionMiddleware does with gradio's key."""
    import itsdangerous

    key = hashlib.sha256((secret + "-v4").encode()).hexdigest()  # gradio/oauth.py attach_oauth
    info = {"userinfo": {"preferred_username": username}, "expires_at": int(time.time() + expires_in)}
    data = base64.b64encode(json.dumps({"oauth_info": info}).encode())
    return itsdangerous.TimestampSigner(key).sign(data).decode()
