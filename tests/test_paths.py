"""Tests for finetune/paths.py: which typed paths the page may open, and what nothing ever reads.

    .venv/bin/pytest tests/test_paths.py -q

The engine's own readers (datafiles.resolve_source, model.resolve_path) refuse /proc, /sys and /dev for
everyone, the command line included; the page's Access adds the rest: data files only, and, once others can
reach the page, only what lies under the allowed folders, decided on the path with links and ``..`` resolved.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finetune import config as cfg
from finetune import data, datafiles, model, paths
from finetune.paths import Access


def ds(path: str, fmt: str = "auto") -> cfg.DatasetConfig:
    return cfg.DatasetConfig(path=path, format=fmt)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A data directory with an upload, an allowed data folder, a folder outside both, a model folder."""
    out = {name: tmp_path / name for name in ("home", "allowed", "outside", "models")}
    for folder in out.values():
        folder.mkdir()
    (out["home"] / "uploads").mkdir()
    (out["home"] / "uploads" / "faq.csv").write_text("q,a\n1,2\n")
    (out["allowed"] / "chats.jsonl").write_text('{"text": "x"}\n')
    (out["outside"] / "secret.csv").write_text("password,hunter2\n")
    (out["outside"] / "notes").write_text("not a table\n")
    (out["models"] / "config.json").write_text("{}")
    return out


@pytest.fixture
def shared(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Access:
    env = {paths.DATA_DIRS_ENV: str(folders["allowed"]), paths.MODEL_DIRS_ENV: str(folders["models"])}
    return Access.from_env(folders["home"], shared=True, environ=env)


SYSTEM = [
    "/proc/self/environ",
    "/proc/1/cmdline",
    "/sys/kernel/notes",
    "/dev/zero",
    "/tmp/../proc/self/environ",
]


@pytest.mark.parametrize("path", SYSTEM)
def test_system_folders_are_refused_everywhere(path: str, tmp_path: Path) -> None:
    for access in (Access(), Access(shared=True)):
        assert "leads into /proc, /sys or /dev" in access.dataset_problem(ds(path, "txt"))
        assert "leads into /proc, /sys or /dev" in access.model_problem(path)
    with pytest.raises(data.DataError, match="leads into /proc, /sys or /dev"):  # the CLI too
        datafiles.resolve_source(ds(path, "txt"))
    with pytest.raises(model.ModelError, match="leads into /proc, /sys or /dev"):
        model.resolve_path(cfg.ModelConfig(name_or_path=path))


def test_a_link_into_proc_is_followed_before_deciding(tmp_path: Path) -> None:
    link = tmp_path / "innocent.txt"
    link.symlink_to("/proc/self/environ")
    assert paths.is_system(link) and paths.is_system(tmp_path / "x" / ".." / "innocent.txt")
    with pytest.raises(data.DataError, match="leads into /proc"):
        data.load(ds(str(link)))


def test_the_page_reads_only_data_files_even_for_its_owner(folders: dict[str, Path], tmp_path: Path) -> None:
    owner = Access()
    assert owner.dataset_problem(ds(str(folders["outside"] / "secret.csv"))) is None  # their own machine
    assert "is not a data file" in owner.dataset_problem(ds("/etc/passwd", "txt"))
    assert "is not a data file" in owner.dataset_problem(ds(str(folders["outside"] / "notes"), "csv"))
    disguised = tmp_path / "table.csv"
    disguised.symlink_to("/etc/passwd")  # the name says table, the file is not one
    assert "is not a data file" in owner.dataset_problem(ds(str(disguised)))


def test_a_shared_page_reads_uploads_and_allowed_folders_only(
    folders: dict[str, Path], shared: Access
) -> None:
    assert shared.dataset_problem(ds(str(folders["home"] / "uploads" / "faq.csv"))) is None
    assert shared.dataset_problem(ds(str(folders["allowed"] / "chats.jsonl"))) is None
    assert shared.dataset_problem(ds("builtin:sample-chat")) is None
    assert shared.dataset_problem(ds("org/name")) is None
    refused = shared.dataset_problem(ds(str(folders["outside"] / "secret.csv")))
    assert "can be reached by others" in refused and paths.DATA_DIRS_ENV in refused
    assert str(folders["allowed"]) in refused and "upload the file" in refused
    sneaky = [
        folders["allowed"] / ".." / "outside" / "secret.csv",
        folders["home"] / "uploads" / ".." / ".." / "outside" / "secret.csv",
    ]
    link = folders["allowed"] / "looks-allowed.csv"
    link.symlink_to(folders["outside"] / "secret.csv")
    for path in [*sneaky, link, Path("~/.bash_history.csv")]:
        assert "can be reached by others" in shared.dataset_problem(ds(str(path))), path
    # A missing file outside is refused the same way: the answer never tells what exists there.
    missing = shared.dataset_problem(ds(str(folders["outside"] / "missing.csv")))
    assert missing == refused


def test_hub_ids_are_strict_and_never_a_local_path_in_disguise(
    folders: dict[str, Path], shared: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folders["outside"].parent)  # "outside/notes" now names a local file
    assert "can be reached by others" in shared.dataset_problem(ds("outside/notes"))
    assert "can be reached by others" in shared.model_problem("outside/notes")
    for bad in ("/etc", "../outside", "a/../b", ".hidden/x", "x/y/z"):
        assert "is not a Hub id" in shared.dataset_problem(ds(bad, "hub")), bad
        with pytest.raises(data.DataError, match="is not a Hub dataset id"):
            datafiles.resolve_source(ds(bad, "hub"))
    assert shared.dataset_problem(ds("squad", "hub")) is None  # a canonical dataset has no org
    assert paths.is_hub_id("google/gemma-2-2b-it") and not paths.is_hub_id("org--x/y")


def test_a_shared_page_loads_models_from_the_model_folders_only(
    folders: dict[str, Path], shared: Access
) -> None:
    from huggingface_hub import constants

    assert shared.model_problem("builtin:tiny-llama") is None
    assert shared.model_problem("google/gemma-2-2b-it") is None
    assert shared.model_problem(str(folders["models"])) is None
    assert shared.model_problem(str(folders["home"] / "runs" / "r1" / "final")) is None
    snapshot = Path(constants.HF_HUB_CACHE) / "models--org--name" / "snapshots" / "abc"
    assert shared.model_problem(str(snapshot)) is None  # loading from the cache, never serving it
    refused = shared.model_problem(str(folders["outside"]))
    assert "can be reached by others" in refused and paths.MODEL_DIRS_ENV in refused
    assert Access().model_problem(str(folders["outside"])) is None  # the owner's own page


def test_bundled_names_are_names_not_patterns() -> None:
    for name in ("../../tests/fixtures/x", "sample-*", "*"):
        with pytest.raises(data.DataError, match="no bundled dataset"):
            datafiles.resolve_source(ds(f"builtin:{name}"))


def test_private_dir_is_this_users_only(tmp_path: Path) -> None:
    folder = paths.private_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and (os.stat(folder).st_mode & 0o777) == 0o700


def test_an_unwritable_data_directory_stops_the_app_with_the_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data directory should be")
    env = os.environ | {"TUNEBOARD_HOME": str(blocker / "home")}
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "(TUNEBOARD_HOME) is not writable" in out.stderr
    assert "Storage Bucket" in out.stderr and "Traceback" not in out.stderr
