"""One run as a job: create its directory, launch its process, stop it, and keep its status.json truthful.

    python -m finetune start presets/demo.yaml [--home DIR]   # queue a run; prints its directory
    python -m finetune stop RUN_DIR | cancel RUN_DIR | resume RUN_DIR | check RUN_DIR
    python -m finetune queue [--home DIR]                     # the waiting runs, in order
    python -m finetune supervise [--home DIR]                 # move the queue without the dashboard

A job is ``python -m finetune train RUN_DIR/config.yaml --run-dir RUN_DIR [--resume]`` spawned by
finetune/procs.py (own process group, stdin /dev/null, output appended to RUN_DIR/train.log, allow-listed
environment). Which job runs when is finetune/scheduler.py (the queue, one job per GPU). Everything about a
job lives in its run directory, so an app that restarts finds its jobs again; nothing is held in memory.

A run directory appears only after the config passed the same checks as ``python -m finetune plan``; it is
built under a hidden name and renamed into place, so a half-written directory never looks like a run.
Stop sends SIGTERM to the process group (the trainer saves a checkpoint and exits, state ``stopped``);
:func:`reconcile` sends SIGKILL once ``grace`` seconds have passed, and marks a job whose process is gone
while its status still says live as ``failed`` with the reason and the last log lines (``stopped`` when a
stop had been asked).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from finetune import failures, notify, plan, preflight, procs, rundir, runs
from finetune import status as st
from finetune.config import Config, LaunchConfig, load, load_yaml
from finetune.errors import JobError

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 60.0  # a real model may need this long to finish its step and write a checkpoint
SPAWN_GRACE_SECONDS = 30.0  # a run marked "starting" but with no pid yet is left alone this long


# ---------------------------------------------------------------- creating and launching


def create(
    config: Config, root: str | Path, *, check: bool = True, files: dict[str, str] | None = None
) -> Path:
    """Validate ``config`` and create its run directory under ``root`` in state ``queued``.

    Validation is :func:`checked_files`; its errors (TuneboardError) propagate before anything is written.
    ``files``: its answer, where the caller had it computed elsewhere (the page, in its analysis process).
    An unwritable or full data directory is a JobError.
    """
    if files is None:
        files = checked_files(config) if check else {rundir.CONFIG: rundir.config_text(config)}
    try:
        return _create_run_dir(Path(root), config, files)
    except OSError as exc:
        raise JobError(f"cannot create a run directory in {root}: {os_reason(exc)}") from None


def checked_files(config: Config, pinned: rundir.Pinned | None = None) -> dict[str, str]:
    """``plan.report``'s checks (preflight + trainer arguments), then the files that define the run
    (finetune/rundir.py) as they resolve now: a preset or template edited while the run waits changes
    nothing. ``pinned``: what a run that started before resolved (a resume)."""
    checked = preflight.run(config, sample=plan.SAMPLE, pinned=pinned)
    plan.report(config, checked)
    return rundir.definition_files(config, checked.template, checked.family)


def check_again(run_dir: Path) -> None:
    """A resume's check: the run's own config against the data as it is now, with what it resolved then."""
    checked_files(load(run_dir / rundir.CONFIG), rundir.pinned(run_dir))


def launch(run_dir: Path, slot: str = "cpu") -> dict[str, Any]:
    """Spawn the job of a queued run on ``slot`` (a GPU index, a set such as '0,1', or 'cpu'); returns its
    status."""
    current = st.read(run_dir)
    argv = command(run_dir, resume=bool(current.get("resume")))
    extra = {"TUNEBOARD_SUPERVISED": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if all(part.isdigit() for part in slot.split(",")):
        extra["CUDA_VISIBLE_DEVICES"] = slot  # the job's GPUs; its processes see them as cuda:0, cuda:1, ...
    st.update(run_dir, state=st.STARTING, slot=slot, argv=argv, launched_at=st.now_iso())
    try:
        proc = procs.spawn(argv, cwd=ROOT, env=procs.job_env(extra), log_path=run_dir / "train.log")
    except OSError as exc:
        return _ended(run_dir, st.FAILED, f"could not start the training process: {os_reason(exc)}")
    return st.update(run_dir, **procs.identity(proc.pid))


def command(run_dir: Path, *, resume: bool = False) -> list[str]:
    """The argv of a job (also shown in the page as the equivalent CLI command): ``python -m finetune train``,
    under ``accelerate launch`` with the run's own launch.yaml when its launch section asks for more than one
    process (each process runs the same command; RANK tells them apart)."""
    train = ["-m", "finetune", "train", str(run_dir / rundir.CONFIG), "--run-dir", str(run_dir)]
    train += ["--resume"] if resume else []
    return [sys.executable, *launcher(launch_settings(run_dir), run_dir / rundir.LAUNCH), *train]


def launcher(launch: LaunchConfig | None, config_file: Path | str) -> list[str]:
    """What goes between ``python`` and ``-m finetune train``: nothing for one process, else ``-m
    accelerate.commands.launch`` with the accelerate ``config_file`` and the launch section's numbers."""
    if launch is None or not launch.distributed:
        return []
    argv = ["-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    argv += ["--num_processes", str(launch.num_processes), "--num_machines", str(launch.num_machines)]
    argv += ["--machine_rank", str(launch.machine_rank), "--main_process_port", str(launch.main_process_port)]
    argv += ["--main_process_ip", launch.main_process_ip] if launch.main_process_ip else []
    return argv


def launch_settings(run_dir: Path) -> LaunchConfig | None:
    """The run's launch section (None when its config cannot be read: the trainer will say why)."""
    try:
        raw = load_yaml((run_dir / rundir.CONFIG).read_text(encoding="utf-8")) or {}
        return LaunchConfig.model_validate(raw.get("launch") or {})
    except (OSError, ValueError, yaml.YAMLError):
        return None


def run_name(config: Config, when: datetime | None = None) -> str:
    stamp = (when or datetime.now()).strftime("%Y%m%d-%H%M%S")
    model = Path(config.model.name_or_path.replace("builtin:", "")).name or "model"
    return re.sub(r"[^\w.-]+", "_", f"{stamp}-{config.task}-{model}")


def _create_run_dir(root: Path, config: Config, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = run_name(config)
    tmp = root / f".{base}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    tmp.mkdir()
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        return _rename_into_place(root, tmp, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk or a crash leaves no half-written run behind
        raise


def _rename_into_place(root: Path, tmp: Path, base: str) -> Path:
    for n in range(1, 1000):  # two starts in the same second get -2, -3, ...
        name = base if n == 1 else f"{base}-{n}"
        now = st.now_iso()
        first = {"state": st.QUEUED, "run_id": name, "created_at": now, "queued_at": now, "attempt": 0}
        st.write_json_atomic(tmp / "status.json", first)
        if (root / name).exists():
            continue
        try:
            tmp.rename(root / name)  # fails if another process took the name meanwhile (non-empty)
            return root / name
        except OSError:
            if not (root / name).exists():
                raise
    raise JobError(f"could not find a free run directory name for {base} in {root}")


def os_reason(exc: OSError) -> str:
    """An OS error in plain words, with what to do about a full, read-only or forbidden disk."""
    import errno

    hints = {
        errno.ENOSPC: "the disk is full: free some space or point TUNEBOARD_HOME at a bigger disk",
        errno.EROFS: "the data directory is read-only: point TUNEBOARD_HOME at a writable folder",
        errno.EACCES: "no permission to write there: point TUNEBOARD_HOME at a folder you own",
        errno.EDQUOT: "the disk quota is used up: free some space",
    }
    hint = hints.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({hint})" if hint else text


# ---------------------------------------------------------------- stopping and reconciling


def stop(run_dir: str | Path, *, wait: float = 0.0, grace: float = STOP_GRACE_SECONDS) -> dict[str, Any]:
    """Ask a live job to stop (SIGTERM to its process group); with ``wait``, poll up to that long for the end.

    Returns the status after the request (or after waiting). A job that is not live is left as it is
    (a queued run is cancelled by finetune.scheduler.cancel, which owns the queue).
    """
    run_dir = Path(run_dir)
    status = reconcile(run_dir, grace=grace)
    if not st.is_live(status):
        return status
    if status.get("state") != st.STOPPING:
        status = st.update_if(run_dir, st.LIVE_STATES, state=st.STOPPING, stop_requested_at=st.now_iso())
        status = status or st.read(run_dir)
    procs.signal_group(status, signal.SIGTERM, run_dir.name)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = reconcile(run_dir, grace=grace)
        if not st.is_live(status):
            break
        time.sleep(0.2)
    return status


def reconcile(run_dir: str | Path, *, grace: float = STOP_GRACE_SECONDS) -> dict[str, Any]:
    """Make status.json tell the truth about a job; returns the (possibly updated) status.

    - live state but no process: ``failed`` with a reason and the log tail (``stopped`` if a stop was asked);
    - ``stopping`` for longer than ``grace`` seconds: SIGKILL to the process group, state ``stopped``.

    A run a cluster scheduler started (status ``launcher``: slurm, skypilot) is left as it says: its
    processes run on other machines, and its rank 0 writes its end into the shared run directory.
    """
    run_dir = Path(run_dir)
    status = st.read(run_dir)
    if not st.is_live(status) or status.get("launcher"):  # a cluster job: its pid is on another machine
        return status
    if "pid" not in status:  # launched a moment ago: the pid is being written
        waited = st.seconds_since(status.get("launched_at") or status.get("created_at"))
        if waited is not None and waited < SPAWN_GRACE_SECONDS:
            return status
    if procs.is_alive(status, run_dir.name):
        asked = st.seconds_since(status.get("stop_requested_at"))
        if status.get("state") == st.STOPPING and asked is not None and asked > grace:
            procs.signal_group(status, signal.SIGKILL, run_dir.name)
            return _ended(run_dir, st.STOPPED, f"killed: did not stop within {grace:g} s of the stop request")
        return status
    if status.get("state") == st.STOPPING:
        return _ended(run_dir, st.STOPPED, "stopped before a checkpoint could be written")
    code = procs.exit_code(status["pid"]) if isinstance(status.get("pid"), int) else None
    reason = f"the training process (pid {status.get('pid')}) {procs.describe_exit(code)}"
    return _ended(run_dir, st.FAILED, failures.explain(reason, runs.log_tail(run_dir, lines=40)[0]))


def _ended(run_dir: Path, state: str, reason: str) -> dict[str, Any]:
    """Record the end of a live run, unless the trainer recorded its own end first."""
    tail, _ = runs.log_tail(run_dir, lines=20)
    fields = {"state": state, "reason": reason, "ended_at": st.now_iso(), "log_tail": tail}
    updated = st.update_if(run_dir, st.LIVE_STATES, **fields)
    if updated is None:
        return st.read(run_dir)
    notify.once(run_dir)
    return updated
