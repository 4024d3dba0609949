"""Where Tuneboard keeps its files, and which local paths a page that others can reach may open.

    TUNEBOARD_HOME=DIR                    the data directory: uploads/, runs/, .cache/ (./tuneboard_home)
    TUNEBOARD_DATA_DIRS=/srv/data:/mnt/x  folders whose data files a shared page may read, besides HOME
    TUNEBOARD_MODEL_DIRS=/srv/models      folders a shared page may load models from, besides HOME/runs and
                                          the Hugging Face cache
    .venv/bin/pytest tests/test_paths.py -q

The command line reads whatever path its user types: the user owns the machine. The dashboard's form is
another matter once anyone else can reach it (a login, Space OAuth, a non-loopback host, --share, a Space):
then a typed dataset is an upload, a bundled sample, a Hub id or a data file under the allowed folders, and a
typed model is a bundled model, a Hub id or a folder under the model folders (:class:`Access`). In every mode
the page refuses what is not a data file (the preview shows a file verbatim), and nothing anywhere reads
/proc, /sys or /dev. Every check decides on the path with its links and ``..`` resolved.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HOME = "tuneboard_home"
DATA_DIRS_ENV = "TUNEBOARD_DATA_DIRS"
MODEL_DIRS_ENV = "TUNEBOARD_MODEL_DIRS"
SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))
DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")
# A Hub repository id as the Hub accepts it: [org/]name, no leading or trailing '.' or '-', no '..' or '--'.
_HUB_NAME = r"(?![.-])[\w.-]+(?<![.-])"
HUB_ID = re.compile(rf"^(?!.*(\.\.|--))(?:{_HUB_NAME}/)?{_HUB_NAME}$")


def home() -> Path:
    """The data directory: $TUNEBOARD_HOME, else ./tuneboard_home."""
    return Path(os.environ.get("TUNEBOARD_HOME", DEFAULT_HOME))


def writable_problem(folder: Path) -> str | None:
    """Why the data directory cannot hold runs (None when it can): checked at start, before anything else."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return (
            f"the data directory {folder} (TUNEBOARD_HOME) is not writable ({exc.strerror}): point "
            "TUNEBOARD_HOME at a folder this user may write (in a container, the mounted volume; on a Space, "
            "the mounted Storage Bucket)"
        )
    return None


def private_dir(path: Path) -> Path:
    """``path`` (and its parents) created, and made readable by this user only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def real(path: str | Path) -> Path:
    """``path`` with ``~``, links and ``..`` resolved (the file that would be opened)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def is_system(path: str | Path) -> bool:
    """Whether ``path`` leads into /proc, /sys or /dev: the system's state (environ, devices), not data."""
    resolved = real(path)
    return any(resolved.is_relative_to(folder) for folder in SYSTEM_DIRS)


def system_refusal(path: str) -> str:
    return f"{path} leads into /proc, /sys or /dev, which hold the system's state, not data; give a data file"


def is_hub_id(text: str, *, org: bool = True) -> bool:
    """Whether ``text`` is a Hub id: org/name, or (``org`` False) also a bare name such as "squad"."""
    return bool(HUB_ID.match(text)) and ("/" in text or not org)


def folders(value: str | None) -> tuple[Path, ...]:
    """The folders of a PATH-like variable (``:``-separated), resolved; empty entries skipped."""
    return tuple(real(part) for part in (value or "").split(os.pathsep) if part.strip())


@dataclass(frozen=True)
class Access:
    """What the page may open: everything but system folders and non-data files on a page only its owner
    can reach (``shared`` False), only the allowed folders when others can reach it."""

    shared: bool = False
    data_dirs: tuple[Path, ...] = ()
    model_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_env(cls, home_dir: Path, *, shared: bool, environ: Mapping[str, str] = os.environ) -> Access:
        """The data directory and $TUNEBOARD_DATA_DIRS for data; HOME/runs, the Hugging Face cache and
        $TUNEBOARD_MODEL_DIRS for models."""
        from huggingface_hub import constants

        data = (real(home_dir), *folders(environ.get(DATA_DIRS_ENV)))
        models = (
            real(home_dir / "runs"),
            real(constants.HF_HUB_CACHE),
            *folders(environ.get(MODEL_DIRS_ENV)),
        )
        return cls(shared, data, models)

    def problems(self, config: Any) -> list[tuple[str, str]]:
        """(path, message) for each typed path of ``config`` that the page may not open."""
        found = {
            "dataset.path": self.dataset_problem(config.dataset),
            "model.name_or_path": self.model_problem(config.model.name_or_path),
        }
        return [(path, message) for path, message in found.items() if message]

    def dataset_problem(self, dataset: Any) -> str | None:
        """Why the page may not read ``dataset`` (a DatasetConfig), or None."""
        raw = dataset.path.strip()
        if raw.startswith("builtin:"):
            return None
        if dataset.format == "hub":
            return self._named_hub_id(raw, "dataset", org=False)
        if is_hub_id(raw) and Path(raw).suffix.lower() not in DATA_SUFFIXES:
            return self._named_hub_id(raw, "dataset")
        if is_system(raw):
            return system_refusal(raw)
        written, resolved = Path(raw).expanduser(), real(raw)
        if written.suffix.lower() not in DATA_SUFFIXES or resolved.suffix.lower() not in DATA_SUFFIXES:
            return (
                f"{written.name} is not a data file: the page reads only files ending in "
                f"{', '.join(DATA_SUFFIXES)}; convert it to one of those"
            )
        if self.shared and not _inside(resolved, self.data_dirs):
            return self._outside("dataset", self.data_dirs, DATA_DIRS_ENV)
        return None

    def model_problem(self, name_or_path: str) -> str | None:
        """Why the page may not load the model ``name_or_path``, or None."""
        raw = name_or_path.strip()
        if raw.startswith("builtin:"):
            return None
        if is_hub_id(raw):
            return self._named_hub_id(raw, "model")
        if is_system(raw):
            return system_refusal(raw)
        if self.shared and not _inside(real(raw), self.model_dirs):
            return self._outside("model", self.model_dirs, MODEL_DIRS_ENV)
        return None

    def _named_hub_id(self, raw: str, what: str, *, org: bool = True) -> str | None:
        if not is_hub_id(raw, org=org):
            return f"{raw!r} is not a Hub id; Hub {what}s are named org/name"
        if self.shared and Path(raw).exists() and not _inside(real(raw), self._dirs(what)):
            # The Hub loaders would open the local path of that name instead (relative to the server).
            return self._outside(
                what, self._dirs(what), DATA_DIRS_ENV if what == "dataset" else MODEL_DIRS_ENV
            )
        return None

    def _dirs(self, what: str) -> tuple[Path, ...]:
        return self.data_dirs if what == "dataset" else self.model_dirs

    @staticmethod
    def _outside(what: str, allowed: tuple[Path, ...], env: str) -> str:
        where = ", ".join(str(folder) for folder in allowed) or "none"
        instead = (
            "upload the file, pick a bundled sample or name a Hub dataset"
            if what == "dataset"
            else "name a Hub model or a bundled one"
        )
        return (
            f"this dashboard can be reached by others, so it opens local {what} files only under: {where}; "
            f"{instead}, or have whoever runs Tuneboard add the folder to {env}"
        )


def _inside(path: Path, allowed: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(folder) for folder in allowed)
