"""Read run directories: list them, read their status, follow their log and metrics, compare them.

    python -m finetune runs [--home DIR]       # one line per run: id, state, start, duration, final loss

A run directory (see finetune/train.py) holds status.json, train.log and metrics.jsonl. Everything here only
reads; nothing is kept in memory between calls. Followers carry a byte offset instead: :func:`read_new`
returns the complete lines written since that offset and the offset to pass next time, so a page polling a
live run reads each byte of a growing file once, and a reload starts again from :func:`tail_offset`.
:func:`attach` and :func:`poll` follow one run that way for the page's Run section (finetune/ui/run_tab.py).
Starting and stopping runs is finetune/jobs.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune import status as st
from finetune.redact import redact_lines

MAX_READ = 4 << 20  # one poll reads at most 4 MiB; a huge backlog is caught up over a few polls
LIVE_STATES, FINAL_STATES = st.LIVE_STATES, st.FINAL_STATES
read_status, is_live, is_active, parse_time = st.read, st.is_live, st.is_active, st.parse_time


def runs_root(home: str | Path) -> Path:
    """Where runs live inside the data directory (TUNEBOARD_HOME)."""
    return Path(home) / "runs"


# ---------------------------------------------------------------- status


ETA_WINDOW = 10  # logged steps the ETA's pace is measured over: recent enough to follow a change of speed


def progress(
    status: dict[str, Any], now: datetime | None = None, rows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Fraction done, training seconds so far (all attempts) and an approximate ETA.

    The ETA follows the pace of the last ETA_WINDOW logged steps in ``rows`` (metrics.jsonl), counted down
    since the last of them: a run's first steps are often faster or slower than the rest (warm-up, caches,
    the page starting other work), so the pace since the start misleads. Without two logged steps yet it
    falls back to the current attempt's pace since it started.
    """
    now = now or datetime.now(UTC)
    started = parse_time(status.get("attempt_started_at") or status.get("started_at"))
    ended = parse_time(status.get("ended_at")) if not is_live(status) else None
    this_attempt = ((ended or now) - started).total_seconds() if started else None
    before = float(status.get("prior_seconds") or 0.0)
    elapsed = None if this_attempt is None else before + max(this_attempt, 0.0)
    step, total = status.get("step") or 0, status.get("max_steps") or 0
    fraction = min(step / total, 1.0) if total else 0.0
    first = status.get("attempt_start_step") or 0
    eta = None
    if total and is_live(status):
        pace = recent_pace(rows or [], first)
        if pace is not None:
            updated = parse_time(status.get("updated_at"))
            since = (now - updated).total_seconds() if updated else 0.0
            eta = max(pace * (total - step) - max(since, 0.0), 0.0)
        elif this_attempt and step > first:
            eta = this_attempt / (step - first) * (total - step)
    return {"step": step, "max_steps": total, "fraction": fraction, "elapsed": elapsed, "eta": eta}


def recent_pace(rows: list[dict[str, Any]], after_step: int = 0, window: int = ETA_WINDOW) -> float | None:
    """Seconds per optimizer step over the last ``window`` logged steps after ``after_step`` (the current
    attempt), from metrics rows' ``step`` and ``elapsed``; None with fewer than two such steps."""
    points: dict[int, float] = {}
    for row in rows:
        step, seconds = row.get("step"), row.get("elapsed")
        if isinstance(step, int) and isinstance(seconds, (int, float)) and step > after_step:
            points[step] = max(float(seconds), points.get(step, 0.0))  # an eval row at a step counts too
    steps = sorted(points)[-(window + 1) :]
    if len(steps) < 2 or points[steps[-1]] <= points[steps[0]]:
        return None
    return (points[steps[-1]] - points[steps[0]]) / (steps[-1] - steps[0])


# ---------------------------------------------------------------- listing


@dataclass(frozen=True)
class RunSummary:
    id: str
    path: str
    state: str
    started_at: str | None
    duration: float | None  # seconds, up to now for a live run
    step: int
    max_steps: int
    final_loss: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_runs(root: str | Path) -> list[RunSummary]:
    """Every run under ``root``, newest first. Hidden folders (a run still being created) are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        if (path / "status.json").is_file() or (path / "config.yaml").is_file():
            found.append(summarize(path))
    return sorted(found, key=lambda r: (r.started_at or "", r.id), reverse=True)


def summarize(run_dir: Path) -> RunSummary:
    status = read_status(run_dir)
    prog = progress(status)
    loss = status.get("loss")
    if loss is None:
        loss = last_value(run_dir / "metrics.jsonl", "loss")
    return RunSummary(
        id=Path(run_dir).name,
        path=str(run_dir),
        state=status.get("state") or st.UNKNOWN,
        started_at=status.get("started_at") or status.get("created_at"),
        duration=prog["elapsed"],
        step=prog["step"],
        max_steps=prog["max_steps"],
        final_loss=loss,
    )


def last_value(path: Path, key: str, window: int = 64 << 10) -> float | None:
    """The last ``key`` in a JSON-lines file, reading only its final ``window`` bytes."""
    lines, _ = _read_tail(path, window)
    for line in reversed(lines):
        row = _json_row(line)
        if row and isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


# ---------------------------------------------------------------- following files


def read_new(path: str | Path, offset: int = 0, limit: int = MAX_READ) -> tuple[list[str], int]:
    """Complete lines written to ``path`` after byte ``offset``, and the offset to read from next time.

    A line still being written (no newline yet) is left for the next call. A file that shrank (replaced or
    truncated) is read again from its start.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < offset:
                offset = 0
            if size == offset:
                return [], offset
            fh.seek(offset)
            chunk = fh.read(min(size - offset, limit))
    except (FileNotFoundError, NotADirectoryError):
        return [], 0
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) < limit:
            return [], offset
        end = len(chunk) - 1  # one line longer than the limit: hand it over in pieces
    lines = chunk[: end + 1].decode("utf-8", errors="replace").splitlines()
    return lines, offset + end + 1


def tail_offset(path: str | Path, window: int) -> int:
    """An offset at most ``window`` bytes before the end, at a line start: where a new follower begins."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0
    if size <= window:
        return 0
    with open(path, "rb") as fh:
        fh.seek(size - window)
        chunk = fh.read(window)
    cut = chunk.find(b"\n")
    return size - window + cut + 1 if cut >= 0 else size


def _read_tail(path: Path, window: int) -> tuple[list[str], int]:
    return read_new(path, tail_offset(path, window))


def parse_metrics(lines: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl lines as dicts; a malformed line (an interrupted write) is skipped."""
    return [row for row in map(_json_row, lines) if row]


def _json_row(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def recent_metrics(run_dir: str | Path, window: int = 64 << 10) -> list[dict[str, Any]]:
    """The metrics rows in metrics.jsonl's last ``window`` bytes: enough for the ETA's recent pace."""
    lines, _ = _read_tail(Path(run_dir) / "metrics.jsonl", window)
    return parse_metrics(lines)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every metrics row of a run (for opening a finished run: one read)."""
    return follow_metrics(run_dir)[0]


def follow_metrics(run_dir: str | Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Every metrics row after byte ``offset`` (0 = all of them), and the offset to follow the file from."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    while True:
        lines, new = read_new(path, offset)
        if new == offset:
            return rows, offset
        rows += parse_metrics(lines)
        offset = new


def read_log(run_dir: str | Path, offset: int) -> tuple[list[str], int]:
    """train.log's lines after ``offset``, tokens hidden (as in :func:`log_tail`), and the next offset."""
    lines, offset = read_new(Path(run_dir) / "train.log", offset)
    return redact_lines(lines), offset


def log_tail(run_dir: str | Path, lines: int = 200, window: int = 256 << 10) -> tuple[list[str], int]:
    """The last ``lines`` lines of train.log and the offset to follow it from."""
    text, offset = _read_tail(Path(run_dir) / "train.log", window)
    return redact_lines(text[-lines:]), offset


# ---------------------------------------------------------------- following one run (the page's Run section)


LOG_LINES = 300  # the log lines a follower keeps: what the page's log box shows
# How a follower reads a run's status: read_status only reads; the page passes jobs.reconcile, which also
# marks a run whose process died as failed (jobs imports this module, so it is passed in, not imported).
StatusOf = Callable[[Path], dict[str, Any]]


def attach(root: Path, run_id: str | None, *, status_of: StatusOf = read_status) -> dict[str, Any]:
    """Start following a run: all its metrics (one read) and the end of its log; offsets at the ends."""
    if not run_id or not (root / run_id).is_dir():
        return {}
    run_dir = root / run_id
    metrics, met_off = follow_metrics(run_dir)
    log, log_off = log_tail(run_dir, LOG_LINES)
    status = status_of(run_dir)
    return {
        "run": run_id,
        "attempt": status.get("attempt"),
        "met_off": met_off,
        "log_off": log_off,
        "rows": metrics,
        "log": log,
        "status": status,
        "fresh": True,
    }


def poll(
    root: Path, follow: dict[str, Any], *, status_of: StatusOf = read_status
) -> tuple[dict[str, Any], bool, bool]:
    """Read what is new since :func:`attach` or the last poll; returns (follow, new metrics?, new log?)."""
    run_dir = root / follow["run"]
    status = status_of(run_dir)
    if status.get("attempt") != follow.get("attempt"):  # resumed: its curves were rewound, read them again
        return attach(root, follow["run"], status_of=status_of), True, True
    log_lines, log_off = read_log(run_dir, follow["log_off"])
    met_lines, met_off = read_new(run_dir / "metrics.jsonl", follow["met_off"])  # at most MAX_READ
    rows = parse_metrics(met_lines)
    follow = {
        **follow,
        "log_off": log_off,
        "met_off": met_off,
        "status": status,
        "fresh": False,
    }
    if rows:
        follow["rows"] = follow["rows"] + rows
    if log_lines:
        follow["log"] = (follow["log"] + log_lines)[-LOG_LINES:]
    return follow, bool(rows), bool(log_lines)


def latest_run(
    root: Path, queued: Callable[[Path], list[str]], *, status_of: StatusOf = read_status
) -> str | None:
    """The newest live run, else the first queued one (``queued``: scheduler.queue), else the newest run."""
    listed = list_runs(root)
    for run in listed:
        if run.state in LIVE_STATES and is_live(status_of(Path(run.path))):
            return run.id
    waiting = queued(root)
    if waiting:
        return waiting[0]
    return listed[0].id if listed else None


# ---------------------------------------------------------------- comparing


# The metrics a run records in metrics.jsonl that compare across runs (the Runs section offers these).
METRICS = ("loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_second", "mean_token_accuracy")


def series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) points of one metric."""
    return [
        (int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float)) and "step" in r
    ]


def compare(run_dirs: list[str | Path], key: str = "loss") -> list[dict[str, Any]]:
    """Long-format rows {run, step, value} of one metric across runs, for an overlaid plot."""
    out = []
    for run_dir in run_dirs:
        name = Path(run_dir).name
        out += [{"run": name, "step": s, "value": v} for s, v in series(read_metrics(run_dir), key)]
    return out


def clock(seconds: float | None) -> str:
    """A duration as h:mm:ss (m:ss under an hour); '–' when unknown."""
    if seconds is None:
        return "–"
    seconds = int(max(seconds, 0))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
