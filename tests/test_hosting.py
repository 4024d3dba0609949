"""Where the app runs (finetune/hosting.py): a Space, ZeroGPU hardware, a data directory wiped on restart.

    .venv/bin/pytest tests/test_hosting.py -q

The browser side (the banner, Start turned off) is tests/e2e/test_space_page.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import run_cli

from finetune import hosting

SPACE = {"SYSTEM": "spaces", "SPACE_ID": "ada/tuneboard"}
SHM = Path("/dev/shm")  # the one filesystem here besides the app's: stands in for a mounted Storage Bucket


def test_a_space_is_told_by_its_variables() -> None:
    assert hosting.on_space(SPACE) and hosting.on_space({"SPACE_ID": "a/b"})
    assert not hosting.on_space({}) and not hosting.on_space({"SYSTEM": "linux"})


@pytest.mark.parametrize(
    ("value", "zero"), [("true", True), ("1", True), ("True", True), ("false", False), ("", False)]
)
def test_zero_gpu_only_on_a_space_that_says_so(value: str, zero: bool) -> None:
    assert hosting.zero_gpu({**SPACE, "SPACES_ZERO_GPU": value}) is zero
    assert not hosting.zero_gpu({"SPACES_ZERO_GPU": "true"})  # not a Space: the variable means nothing


def test_a_data_directory_on_the_apps_own_disk_is_ephemeral_on_a_space(tmp_path: Path) -> None:
    assert hosting.ephemeral(tmp_path / "home", SPACE, app_dir=tmp_path)
    assert hosting.ephemeral(tmp_path / "not" / "made" / "yet", SPACE, app_dir=tmp_path)
    assert not hosting.ephemeral(
        tmp_path / "home", {}, app_dir=tmp_path
    )  # a GPU box or a container: the user's


@pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm, a second filesystem")
def test_a_data_directory_on_another_filesystem_is_not(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(dir=SHM) as bucket:
        assert not hosting.ephemeral(Path(bucket) / "home", SPACE, app_dir=tmp_path)


def test_zero_gpu_refuses_a_run_before_writing_anything(tmp_path: Path) -> None:
    env = {**SPACE, "SPACES_ZERO_GPU": "true", "TUNEBOARD_HOME": str(tmp_path / "home")}
    out = run_cli("start", "presets/demo.yaml", env=env)
    assert out.returncode != 0
    assert "ZeroGPU" in out.stderr and "L4, L40S, A10G, A100 or H100" in out.stderr
    assert not (tmp_path / "home" / "runs").exists() or not any((tmp_path / "home" / "runs").iterdir())
