"""Shared test set-up: an isolated cache and data home, and the tiny models built once per session.

Every test runs offline: HF_HUB_OFFLINE is set before transformers/datasets are imported, and the models are
built locally by finetune.builtin through the same loading code that training uses.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tuneboard-tests-"))
os.environ.setdefault("TUNEBOARD_CACHE", str(_SESSION_DIR / "cache"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)


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
