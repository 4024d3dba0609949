"""status.json: the one record of where a run stands, shared by the training process and the supervisor.

    (imported by finetune/train.py, jobs.py, scheduler.py and runs.py; nothing to run on its own)

Two processes write it: the trainer (progress, its own end) and the supervisor (queued, stopping, a death
the trainer could not report). Each write is a read-modify-write of only the fields it names, done under an
exclusive lock on RUN_DIR/.status.lock and published with a rename, so a reader never sees half a file and
neither writer loses the other's fields.

States: queued -> starting -> running -> (stopping ->) finished | stopped | failed; a queued run that is
cancelled ends as ``cancelled``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class State(StrEnum):
    """Where a run stands (the ``state`` in status.json; a StrEnum, so it reads and compares as its text)."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    CANCELLED = "cancelled"


QUEUED, STARTING, RUNNING, STOPPING = State.QUEUED, State.STARTING, State.RUNNING, State.STOPPING
FINISHED, STOPPED, FAILED, CANCELLED = State.FINISHED, State.STOPPED, State.FAILED, State.CANCELLED
UNKNOWN = "unknown"  # what a reader shows when status.json names no state; no run is ever put in it
PENDING_STATES = (QUEUED,)
LIVE_STATES = (STARTING, RUNNING, STOPPING)
FINAL_STATES = (FINISHED, STOPPED, FAILED, CANCELLED)
RESUMABLE_STATES = (STOPPED, FAILED, CANCELLED)
LOCK_NAME = ".status.lock"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def seconds_since(value: Any) -> float | None:
    stamp = parse_time(value)
    return (datetime.now(UTC) - stamp).total_seconds() if stamp else None


def write_text_atomic(path: Path, text: str) -> None:
    """Readers never see a half-written file, and a failed write (a full disk) leaves the old one as it was:
    write beside it, flush to disk, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1))


def read_json(path: Path) -> dict[str, Any] | None:
    """A result file (stops.json, eval.json) as a dict; None while it does not exist or is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read(run_dir: str | Path) -> dict[str, Any]:
    """status.json as a dict ({} while it does not exist yet)."""
    try:
        data = json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes and threads."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def locked(run_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """Hold the run's status lock (blocking; held only for a read-modify-write)."""
    return file_lock(Path(run_dir) / LOCK_NAME)


def update(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Set ``fields`` in status.json, keeping every other field; returns the new status."""
    run_dir = Path(run_dir)
    with locked(run_dir):
        data = read(run_dir) | fields | {"updated_at": now_iso()}
        write_json_atomic(run_dir / "status.json", data)
    return data


def update_if(run_dir: str | Path, allowed: tuple[str, ...], **fields: Any) -> dict[str, Any] | None:
    """Like :func:`update`, but only while the state is one of ``allowed``; None (and no write) otherwise.

    This is how two writers agree: e.g. the supervisor marks a run ``failed`` only if it is still live, so
    a trainer that wrote ``finished`` a moment earlier is never overwritten.
    """
    run_dir = Path(run_dir)
    with locked(run_dir):
        data = read(run_dir)
        if data.get("state") not in allowed:
            return None
        data = data | fields | {"updated_at": now_iso()}
        write_json_atomic(run_dir / "status.json", data)
    return data


def is_live(status: dict[str, Any]) -> bool:
    """A process is (or is about to be) working on the run."""
    return status.get("state") in LIVE_STATES


def is_active(status: dict[str, Any]) -> bool:
    """Live or waiting in the queue: worth following on the page."""
    return status.get("state") in LIVE_STATES + PENDING_STATES
