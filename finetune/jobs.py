"""Start and stop training runs as separate processes; all job state lives in the run directory.

    python -m finetune.jobs start presets/demo.yaml [--home DIR]   # prints the run directory
    python -m finetune.jobs stop RUN_DIR
    python -m finetune.jobs check RUN_DIR                          # reconcile and print status.json

A job is ``python -m finetune train RUN_DIR/config.yaml --run-dir RUN_DIR``, started from an argv list (never
a shell) in its own session and process group, stdin /dev/null, stdout and stderr appended to
RUN_DIR/train.log (a file, so nobody has to drain a pipe) with ``TUNEBOARD_SUPERVISED=1`` (the trainer then
does not copy its output to train.log itself). status.json identifies the process by pid + start time
(field 22 of /proc/PID/stat) + run id, so a pid reused by another program is never signalled, and an app
that restarts finds its jobs again by reading the run directories: nothing is held in memory.

A run directory appears only after the config passed the same checks as ``python -m finetune plan``; it is
built under a hidden name and renamed into place, so a half-written directory never looks like a run.
Stop sends SIGTERM to the process group (the trainer saves a checkpoint and exits, state ``stopped``);
:func:`reconcile` sends SIGKILL once ``grace`` seconds have passed, and marks a job whose process is gone
while its status still says live as ``failed`` (or ``stopped`` when a stop had been requested).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune import runs
from finetune.callbacks import now_iso, write_json_atomic
from finetune.config import Config

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 60.0  # a real model may need this long to finish its step and write a checkpoint


class JobError(RuntimeError):
    """A job that cannot be started or signalled; the message says why."""


# ---------------------------------------------------------------- starting


def start(config: Config, root: str | Path, *, env: dict[str, str] | None = None, check: bool = True) -> Path:
    """Validate ``config``, create its run directory under ``root`` and start training it; returns the dir.

    Validation is ``plan.report`` (preflight + trainer arguments); its errors (ConfigError, PreflightError)
    propagate before anything is written.
    """
    if check:
        from finetune import plan

        plan.report(config)
    run_dir = _create_run_dir(Path(root), config)
    argv = command(run_dir)
    child_env = {**os.environ, **(env or {})}
    child_env |= {"TUNEBOARD_SUPERVISED": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(run_dir / "train.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Stop signals the trainer and any helpers it spawns
        )
    _update(run_dir, pid=proc.pid, pid_start_time=process_start_time(proc.pid))
    return run_dir


def command(run_dir: Path) -> list[str]:
    """The argv of a job (also shown in the page as the equivalent CLI command)."""
    return [
        sys.executable,
        "-m",
        "finetune",
        "train",
        str(run_dir / "config.yaml"),
        "--run-dir",
        str(run_dir),
    ]


def run_name(config: Config, when: datetime | None = None) -> str:
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    model = Path(config.model.name_or_path.replace("builtin:", "")).name or "model"
    return re.sub(r"[^\w.-]+", "_", f"{stamp}-{config.task}-{model}")


def _create_run_dir(root: Path, config: Config) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = run_name(config)
    tmp = root / f".{base}.{os.getpid()}.tmp"
    tmp.mkdir()
    (tmp / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    for n in range(1, 1000):  # two starts in the same second get -2, -3, ...
        name = base if n == 1 else f"{base}-{n}"
        status = {"state": "starting", "run_id": name, "created_at": now_iso(), "argv": command(root / name)}
        write_json_atomic(tmp / "status.json", status)
        if (root / name).exists():
            continue
        try:
            tmp.rename(root / name)  # still fails if another process took the name meanwhile (non-empty)
            return root / name
        except OSError:
            if not (root / name).exists():
                raise
    raise JobError(f"could not find a free run directory name for {base} in {root}")


# ---------------------------------------------------------------- identity


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if no such process."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after ``(comm)``, which may itself hold spaces and parentheses."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(status: dict[str, Any]) -> bool:
    """Whether the process recorded in ``status`` still runs: same pid, same start time, not a zombie."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    _reap(pid)
    if not Path("/proc").is_dir():  # not Linux: no start times to compare; trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    expected = status.get("pid_start_time")
    return expected is None or int(fields[19]) == expected


def _reap(pid: int) -> None:
    """Collect a finished child of this process, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass  # not our child (started by an earlier app): init reaps it


# ---------------------------------------------------------------- stopping and reconciling


def stop(run_dir: str | Path, *, wait: float = 0.0, grace: float = STOP_GRACE_SECONDS) -> dict[str, Any]:
    """Ask the job to stop (SIGTERM to its process group); with ``wait``, poll up to that long for the end.

    Returns the status after the request (or after waiting). A job that is not running is left as it is.
    """
    run_dir = Path(run_dir)
    status = reconcile(run_dir, grace=grace)
    if not runs.is_live(status):
        return status
    if status.get("state") != "stopping":
        status = _update(run_dir, state="stopping", stop_requested_at=now_iso())
    _signal(status, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = reconcile(run_dir, grace=grace)
        if not runs.is_live(status):
            break
        time.sleep(0.2)
    return status


def reconcile(run_dir: str | Path, *, grace: float = STOP_GRACE_SECONDS) -> dict[str, Any]:
    """Make status.json tell the truth about a job; returns the (possibly updated) status.

    - live state but no process: ``failed`` with a reason and the log tail (``stopped`` if a stop was asked);
    - ``stopping`` for longer than ``grace`` seconds: SIGKILL to the process group.
    """
    run_dir = Path(run_dir)
    status = runs.read_status(run_dir)
    if not runs.is_live(status):
        return status
    if "pid" not in status:  # between the directory's creation and the spawn: nothing to judge yet
        created = runs.parse_time(status.get("created_at"))
        if created and (datetime.now(UTC) - created).total_seconds() < 30:
            return status
    if is_alive(status):
        asked = runs.parse_time(status.get("stop_requested_at"))
        if status.get("state") == "stopping" and asked:
            if (datetime.now(UTC) - asked).total_seconds() > grace:
                _signal(status, signal.SIGKILL)
                time.sleep(0.1)
                return _ended(
                    run_dir, "stopped", f"killed: did not stop within {grace:g} s of the stop request"
                )
        return status
    status = runs.read_status(run_dir)  # the trainer may have written its final state meanwhile
    if not runs.is_live(status):
        return status
    if status.get("state") == "stopping":
        return _ended(run_dir, "stopped", "stopped before a checkpoint could be written")
    pid = status.get("pid")
    return _ended(run_dir, "failed", f"the training process (pid {pid}) ended without reporting a result")


def _ended(run_dir: Path, state: str, reason: str) -> dict[str, Any]:
    tail, _ = runs.log_tail(run_dir, lines=20)
    return _update(run_dir, state=state, reason=reason, ended_at=now_iso(), log_tail=tail)


def _signal(status: dict[str, Any], sig: signal.Signals) -> None:
    if not is_alive(status):
        return
    try:
        os.killpg(status["pid"], sig)  # the group id is the pid: the job leads its own session
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise JobError(f"not allowed to signal process {status['pid']}: {exc}") from None


def _update(run_dir: Path, **fields: Any) -> dict[str, Any]:
    data = runs.read_status(run_dir) | fields | {"updated_at": now_iso()}
    write_json_atomic(run_dir / "status.json", data)
    return data


# ---------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    import argparse
    import json

    from finetune import config as cfg

    parser = argparse.ArgumentParser(prog="python -m finetune.jobs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="validate a config and start training it in the background")
    p_start.add_argument("config", type=Path)
    p_start.add_argument(
        "--home", type=Path, default=Path(os.environ.get("TUNEBOARD_HOME", "tuneboard_home"))
    )
    p_stop = sub.add_parser("stop", help="stop a run with a checkpoint")
    p_stop.add_argument("run_dir", type=Path)
    p_stop.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the end (default 120)")
    p_check = sub.add_parser("check", help="reconcile a run's status with its process and print it")
    p_check.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "start":
        print(start(cfg.load(args.config), runs.runs_root(args.home)))
    elif args.cmd == "stop":
        print(json.dumps(stop(args.run_dir, wait=args.wait), indent=1, ensure_ascii=False))
    else:
        print(json.dumps(reconcile(args.run_dir), indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
