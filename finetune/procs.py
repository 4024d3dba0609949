"""Training processes as the supervisor sees them: spawn one safely, tell whether it still runs, signal it.

    (used by finetune/jobs.py and finetune/scheduler.py; nothing to run on its own)

A job is spawned from an argv list (never a shell) in its own session and process group, stdin /dev/null,
output appended to a file (nobody has to drain a pipe, so the job never blocks or dies of a broken pipe
when the app goes away), with an allow-listed environment: the dashboard's own secrets (its login, OAuth
secrets) never reach it, while HF_TOKEN does (the job may need it; it is never written anywhere).

Identity is pid + process start time (field 22 of /proc/PID/stat) + boot id + run id, never the pid alone:
a pid recycled by another program, after a reboot or otherwise, is never signalled nor taken for a live run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

# Environment a job inherits: exact names, then prefixes. Anything else (TUNEBOARD_AUTH, GRADIO_*,
# OAUTH_CLIENT_SECRET, cloud credentials...) stays in the dashboard process.
ENV_NAMES = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "LD_LIBRARY_PATH", "XDG_CACHE_HOME", "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "HUGGING_FACE_HUB_TOKEN", "TUNEBOARD_HOME", "TUNEBOARD_CACHE", "TUNEBOARD_WEBHOOK_URL",
}  # fmt: skip
ENV_PREFIXES = ("LC_", "HF_", "CUDA_", "NVIDIA_", "NCCL_", "PYTORCH_", "TORCH_", "TRANSFORMERS_", "TRITON_",
                "ACCELERATE_", "BNB_", "WANDB_")  # fmt: skip

_children: dict[int, subprocess.Popen] = {}  # jobs this process spawned: only to collect their exit status


def job_env(extra: dict[str, str] | None = None, source: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed environment for a job, plus ``extra``."""
    source = os.environ if source is None else source
    env = {k: v for k, v in source.items() if k in ENV_NAMES or k.startswith(ENV_PREFIXES)}
    return env | (extra or {})


def spawn(argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``argv`` detached from this process: own session, stdin /dev/null, output appended to a file."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own group: Stop reaches the trainer and any worker it spawns
            close_fds=True,
        )
    _children[proc.pid] = proc
    return proc


def identity(pid: int) -> dict[str, Any]:
    """The fields that identify process ``pid`` in status.json."""
    return {"pid": pid, "pid_start_time": start_time(pid), "boot_id": boot_id()}


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None if no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def age(pid: int) -> float | None:
    """Seconds since process ``pid`` started (its /proc start time against the machine's uptime)."""
    ticks = start_time(pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0) if ticks is not None else None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after ``(comm)``, which may itself hold spaces and parentheses."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def is_alive(status: dict[str, Any], run_id: str | None = None) -> bool:
    """Whether the process recorded in ``status`` still runs: same pid, start time, boot and run."""
    pid = status.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if run_id is not None and status.get("run_id") not in (None, run_id):
        return False  # a copied run directory: its process belongs to the original
    if status.get("boot_id") and boot_id() and status["boot_id"] != boot_id():
        return False  # the machine restarted since: the pid is someone else's
    poll_child(pid)
    if not Path("/proc").is_dir():  # not Linux: no start times to compare; trust the pid
        return _kill_zero(pid)
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    expected = status.get("pid_start_time")
    return expected is None or int(fields[19]) == expected


def _kill_zero(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def poll_child(pid: int) -> int | None:
    """Exit code of a job this process spawned (negative: killed by that signal); None if running/unknown.

    Also collects the finished child so it does not linger as a zombie.
    """
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll()
    try:  # a child not in the table (e.g. spawned through another module): collect it all the same
        done, code = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return None  # not our child (an earlier app started it): init collects it
    return os.waitstatus_to_exitcode(code) if done else None


def exit_code(pid: int, wait: float = 2.0) -> int | None:
    """Exit code of a finished job this process spawned, waiting up to ``wait`` s for it to be collectable.

    A killed multi-threaded process shows as a zombie before its last thread is gone and waitpid can
    report it; the wait covers that moment. None when the job is not our child (an earlier app's).
    """
    if pid not in _children:
        return poll_child(pid)
    deadline = time.monotonic() + wait
    while (code := poll_child(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return code


def describe_exit(code: int | None) -> str:
    """Plain words for how a process ended."""
    if code is None:
        return "ended without reporting a result (killed, or the machine ran out of memory?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = " (kill -9, or the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{why} before it could report a result"
    return f"exited with status {code} without reporting a result"


def signal_group(status: dict[str, Any], sig: int, run_id: str | None = None) -> bool:
    """Send ``sig`` to the job's process group if (and only if) it is still the recorded process."""
    if not is_alive(status, run_id):
        return False
    try:
        os.killpg(status["pid"], sig)  # the group id is the pid: the job leads its own session
    except ProcessLookupError:
        return False
    return True
