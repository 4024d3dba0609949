"""Which job runs when: a queue on disk, one running job per device slot, and the loop that moves it.

    python -m finetune queue | supervise        # the CLI face of this module

Slots are the GPUs this process can see (one job per GPU, pinned with CUDA_VISIBLE_DEVICES), or one
``cpu`` slot; ``TUNEBOARD_SLOTS=0,1`` names them explicitly. Further runs wait in the queue: their
status.json says ``queued`` and RUNS/.queue.json keeps their order, which every browser session shares and
can change (move, cancel). Every change and every dispatch happens under an exclusive lock on
RUNS/.queue.lock and a slot counts as taken as soon as its job's status says ``starting``, so two Starts at
the same moment -- from two tabs, two app processes or the CLI -- never put two jobs on one GPU.

The dashboard runs :class:`Supervisor` (one thread for all runs): every second it reconciles the live runs
(a killed job becomes ``failed`` within seconds, a stop that hangs gets SIGKILL) and starts the next queued
run when a slot frees up. Without the dashboard, ``python -m finetune supervise`` does the same.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from finetune import hosting, jobs
from finetune import status as st
from finetune.config import Config
from finetune.errors import TuneboardError

log = logging.getLogger("tuneboard.scheduler")
QUEUE_FILE = ".queue.json"
LOCK_FILE = ".queue.lock"
TICK_SECONDS = 1.0


# ---------------------------------------------------------------- slots


def slots() -> list[str]:
    """Device slots: TUNEBOARD_SLOTS, else the visible GPUs, else one 'cpu' slot."""
    named = os.environ.get("TUNEBOARD_SLOTS", "").strip()
    if named:
        return list(dict.fromkeys(s.strip() for s in named.split(",") if s.strip()))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
        return gpus or ["cpu"]
    return [str(i) for i in range(_gpu_count())] or ["cpu"]


def _gpu_count() -> int:
    """The GPUs NVIDIA's driver lists, read without importing torch (seconds and hundreds of MB in the
    page's process); torch's count where a GPU device exists but no such list does (ROCm, odd containers)."""
    listed = Path("/proc/driver/nvidia/gpus")
    if listed.is_dir():
        return sum(1 for _ in listed.iterdir())
    if not (Path("/dev/kfd").exists() or any(Path("/dev").glob("nvidia[0-9]*"))):
        return 0  # no GPU driver at all: a CPU machine
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / a broken driver: the CPU
        return 0


# ---------------------------------------------------------------- the queue file


def _locked(root: Path) -> AbstractContextManager[None]:
    """The queue's lock: every change to the order and every dispatch holds it."""
    root.mkdir(parents=True, exist_ok=True)
    return st.file_lock(root / LOCK_FILE)


def _read_order(root: Path) -> list[str]:
    """The saved order, repaired: only runs still queued, plus queued runs it misses (oldest first)."""
    try:
        saved = json.loads((root / QUEUE_FILE).read_text(encoding="utf-8")).get("order", [])
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        saved = []
    queued = {
        path.name: status.get("queued_at") or ""
        for path in _run_dirs(root)
        if (status := st.read(path)).get("state") == st.QUEUED
    }
    order = [run_id for run_id in dict.fromkeys(saved) if run_id in queued]
    missing = sorted((t, run_id) for run_id, t in queued.items() if run_id not in order)
    return order + [run_id for _, run_id in missing]


def _write_order(root: Path, order: list[str]) -> None:
    path = root / QUEUE_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("order") == order:
            return  # unchanged: the supervisor checks every second, so skip the write and its fsync
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        pass
    st.write_json_atomic(path, {"order": order})


def _run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def queue(root: str | Path) -> list[str]:
    """Run ids waiting to start, first to start first."""
    root = Path(root)
    try:
        with _locked(root):
            return _read_order(root)
    except OSError:  # a read-only or missing data directory: nothing can change the order, read it as is
        return _read_order(root)


# ---------------------------------------------------------------- what the page and the CLI call


def submit(
    config: Config, root: str | Path, *, check: bool = True, files: dict[str, str] | None = None
) -> Path:
    """Validate ``config``, create its run directory, queue it and start it if a slot is free. ``files``:
    jobs.checked_files' answer where the caller has it (the page asks its analysis process)."""
    root = Path(root)
    hosting.check_can_train()
    run_dir = jobs.create(config, root, check=check, files=files)
    with _locked(root):
        _write_order(root, _read_order(root))  # the new run joins at the end
        _dispatch_locked(root)
    return run_dir


def resume(run_dir: str | Path, *, check: Callable[[Path], Any] = jobs.check_again) -> dict[str, Any]:
    """Queue a stopped, failed or cancelled run again; it continues from its last complete checkpoint.

    The config is checked again first (the dataset may have moved since; ``check``: where, the page asks
    its analysis process): its errors propagate and the run is left as it was.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "status.json").is_file():
        raise jobs.JobError(f"{run_dir} is not a run directory (it has no status.json)")
    hosting.check_can_train()
    current = jobs.reconcile(run_dir)
    state = current.get("state")
    if state not in st.RESUMABLE_STATES:
        raise jobs.JobError(
            f"run {run_dir.name} is {state or 'unknown'}: only a stopped, failed or cancelled run can resume"
        )
    check(run_dir)
    fields = {"state": st.QUEUED, "queued_at": st.now_iso(), "resume": True, "reason": None}
    fields |= {"stop_requested_at": None, "log_tail": None}
    with _locked(run_dir.parent):
        updated = st.update_if(run_dir, st.RESUMABLE_STATES, **fields)
        if updated is None:
            raise jobs.JobError(f"run {run_dir.name} changed state meanwhile: try again")
        _write_order(run_dir.parent, _read_order(run_dir.parent))
        _dispatch_locked(run_dir.parent)
    return st.read(run_dir)


def cancel(run_dir: str | Path) -> dict[str, Any]:
    """Take a queued run out of the queue (state ``cancelled``; Resume queues it again)."""
    run_dir = Path(run_dir)
    with _locked(run_dir.parent):
        fields = {"state": st.CANCELLED, "ended_at": st.now_iso(), "reason": "cancelled while queued"}
        st.update_if(run_dir, (st.QUEUED,), **fields)
        _write_order(run_dir.parent, _read_order(run_dir.parent))
    return st.read(run_dir)


def stop(run_dir: str | Path, *, wait: float = 0.0) -> dict[str, Any]:
    """Stop a live run with a checkpoint, or cancel a queued one."""
    run_dir = Path(run_dir)
    if st.read(run_dir).get("state") == st.QUEUED:
        return cancel(run_dir)
    return jobs.stop(run_dir, wait=wait)


def move(root: str | Path, run_id: str, offset: int) -> list[str]:
    """Move a queued run ``offset`` places (negative = sooner); returns the new order."""
    root = Path(root)
    with _locked(root):
        order = _read_order(root)
        if run_id in order:
            i = order.index(run_id)
            j = max(0, min(len(order) - 1, i + offset))
            order.insert(j, order.pop(i))
            _write_order(root, order)
        return order


# ---------------------------------------------------------------- dispatching


def dispatch(root: str | Path) -> list[str]:
    """Start queued runs on free slots; returns the ids started (none on a data directory it cannot lock)."""
    root = Path(root)
    try:
        with _locked(root):
            return _dispatch_locked(root)
    except OSError as exc:
        log.warning("cannot dispatch in %s: %s", root, exc)
        return []


def _dispatch_locked(root: Path) -> list[str]:
    order = _read_order(root)
    free = [s for s in slots() if s not in _busy(root)]
    started = []
    while free and order:
        need = _slots_wanted(root / order[0])
        if need > len(free):  # the first in line waits for enough GPUs; nothing overtakes it
            break
        run_id = order.pop(0)
        taken, free = free[:need], free[need:]
        status = jobs.launch(root / run_id, ",".join(taken))
        started.append(run_id)
        if status.get("state") == st.FAILED:  # could not even spawn (jobs told the webhook): slots still free
            free = taken + free
    _write_order(root, order)
    return started


def _slots_wanted(run_dir: Path) -> int:
    """Slots a queued run takes: a GPU per process on this machine (a GPU set); one when there are no GPUs.
    Never more than there are, so a queue can always move (preflight refused more processes than GPUs)."""
    every = slots()
    if every == ["cpu"]:
        return 1
    launch = jobs.launch_settings(run_dir)
    per_machine = -(-launch.num_processes // launch.num_machines) if launch else 1
    return max(1, min(per_machine, len(every)))


def _busy(root: Path) -> list[str]:
    """Slots taken by live runs. A live run with no slot (started by hand on the CLI) takes one too."""
    taken, unplaced = [], 0
    for path in _run_dirs(root):
        status = st.read(path)
        if st.is_live(status) and st.is_live(status := jobs.reconcile(path)) and not status.get("launcher"):
            if status.get("slot"):
                taken += str(status["slot"]).split(",")  # a multi-GPU job holds its whole set
            else:
                unplaced += 1
    spare = [s for s in slots() if s not in taken]
    return taken + spare[:unplaced]


def free_gpu(root: str | Path) -> str | None:
    """A GPU that no run holds and no queued run waits for (the inference worker's), else None."""
    root = Path(root)
    if queue(root):
        return None  # a waiting run gets the next free GPU, not a chat
    taken = set(_busy(root))
    return next((slot for slot in slots() if slot != "cpu" and slot not in taken), None)


def tick(root: str | Path) -> list[str]:
    """One supervisor round: reconcile every live run (inside :func:`dispatch`), start what can start."""
    return dispatch(root)


def stop_for_shutdown(root: str | Path, wait: float) -> list[str]:
    """The app's container is going away (docker stop, a Space restart): ask every live run to stop with a
    checkpoint, wait up to ``wait`` seconds for them, and mark them to resume when the app starts again.
    Returns the ids of the runs it stopped."""
    live = [p for p in _run_dirs(Path(root)) if st.is_live(jobs.reconcile(p))]
    for run_dir in live:
        st.update(run_dir, resume_on_start=True)
        jobs.stop(run_dir)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(st.is_live(jobs.reconcile(p)) for p in live):
        time.sleep(0.5)
    return [p.name for p in live]


def resume_interrupted(root: str | Path, check: Callable[[Path], Any] = jobs.check_again) -> list[str]:
    """Queue again the runs a shutdown stopped (:func:`stop_for_shutdown`), from their last checkpoint
    (``check``: as :func:`resume`'s)."""
    resumed = []
    for run_dir in _run_dirs(Path(root)):
        status = jobs.reconcile(run_dir)
        if status.get("resume_on_start") and status.get("state") in st.RESUMABLE_STATES:
            try:
                resume(run_dir, check=check)
                resumed.append(run_dir.name)
            except TuneboardError as exc:  # the data moved meanwhile: it stays stopped, with Resume and why
                reason = f"not resumed after the restart: {exc}"
                st.update(run_dir, reason=reason)
                log.warning("%s: %s", run_dir.name, reason)
            st.update(run_dir, resume_on_start=None)
    return resumed


def _resume_after_restart(root: Path, check: Callable[[Path], Any]) -> None:
    try:
        resume_interrupted(root, check)
    except Exception:  # noqa: BLE001 - supervising must start whatever happened to the old runs
        log.exception("resuming the runs a shutdown stopped failed")


class Supervisor(threading.Thread):
    """The dashboard's one background thread: :func:`tick` every second, for every run under ``root``."""

    _started: dict[Path, Supervisor] = {}
    _guard = threading.Lock()

    def __init__(self, root: Path, every: float = TICK_SECONDS):
        super().__init__(name="tuneboard-supervisor", daemon=True)
        self.root, self.every = Path(root), every
        self.halt = threading.Event()

    @classmethod
    def ensure(cls, root: str | Path, check: Callable[[Path], Any] = jobs.check_again) -> Supervisor:
        """Start the supervisor of ``root`` unless this process already runs one; first queue again the runs
        a shutdown stopped (``check``: as :func:`resume`'s; the page asks its analysis process)."""
        key = Path(root).resolve()
        with cls._guard:
            if key not in cls._started or not cls._started[key].is_alive():
                # In this thread, before the supervisor's: resuming checks the config, which (with the default
                # ``check``, in this process) imports trl, and two threads importing trl's lazy modules at
                # once can see a half-made one (ImportError; the page's analysis process guards itself so).
                _resume_after_restart(key, check)
                cls._started[key] = cls(key)
                cls._started[key].start()
            return cls._started[key]

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                tick(self.root)
            except Exception:  # noqa: BLE001 - a bad run directory must not stop supervising the others
                log.exception("supervisor tick failed")
            self.halt.wait(self.every)


def supervise_forever(root: Path) -> int:
    print(f"supervising {root} (slots: {', '.join(slots())}); Ctrl-C to leave (jobs keep running)")
    try:
        while True:
            for run_id in tick(root):
                print(f"started {run_id}", flush=True)
            time.sleep(TICK_SECONDS)
    except KeyboardInterrupt:
        return 0
