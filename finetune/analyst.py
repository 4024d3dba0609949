"""The analysis process: where the page's previews are computed (finetune/analysis.py), beside the dashboard.

    python -m finetune analyst     # what Analyst starts: pickled requests on stdin, answers on stdout
    .venv/bin/pytest tests/test_analyst.py -q

Why a process of its own: what the page shows before a run needs a tokenizer, the trainer's arguments and
the model's shape, that is torch, transformers and TRL: ~300 MB the dashboard's process would hold for as
long as it runs, beside the training runs it starts (issue 12 asks for under 600 MB while a run trains), and
the counting of a big file's every record (tokenized in threads) would share the server's interpreter. In
here the analysis keeps its caches between requests; after TUNEBOARD_ANALYST_IDLE seconds (default 300)
without one the process exits, giving its memory back to a training run, and the next request starts it
again (a few seconds: its imports).

A request is ``(id, name, args, kwargs)``, ``name`` one of :data:`CALLS`; each runs in a thread of its own,
so a slow one never holds up the others, and its answer ``(id, "ok", value)``, ``(id, "error",
TuneboardError)`` or ``(id, "failed", text)`` comes back when it is done. The libraries are imported once,
in one thread, before the requests that need them run: transformers' lazy modules imported from two threads
at once can hand one of them a half-made module ("cannot import name 'AutoConfig'").
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from finetune import procs
from finetune.errors import JobError, TuneboardError

IDLE_SECONDS = float(os.environ.get("TUNEBOARD_ANALYST_IDLE", "300"))
THREADS = 8  # requests at once; the analysis bounds its own heavy work (analysis._READERS, _COUNTING)
ROOT = Path(__file__).resolve().parent.parent
CALLS = frozenset(
    {
        "analyze", "summary", "render_record", "tokenize_compare", "scan_token_like", "dataset_preview",
        "family_of", "count_every_record", "every_record_state", "unused_tokens", "effective_config",
        "run_files", "check_again",
    }
)  # fmt: skip


# ---------------------------------------------------------------- the analysis process


def serve(idle: float = IDLE_SECONDS) -> None:
    """Answer requests until stdin closes, or nothing has come and nothing is running for ``idle`` s."""
    requests, answers = Connection(os.dup(0), writable=False), Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # whatever a library prints goes to the log, never into the answers
    sys.stdout = sys.stderr
    sending, running, imported = threading.Lock(), Running(), _import_libraries()

    def answer(request_id: int, name: str, args: tuple, kwargs: dict) -> None:
        imported.wait()
        reply = _call(name, args, kwargs)
        with sending:
            answers.send((request_id, *reply))
        running.done()

    with ThreadPoolExecutor(THREADS, thread_name_prefix="tuneboard-analyst") as pool:
        while requests.poll(idle) or not running.idle_for(idle):
            if not requests.poll(0):
                continue
            try:
                request_id, name, args, kwargs = requests.recv()
            except EOFError:  # the dashboard went away
                return
            running.start()
            pool.submit(answer, request_id, name, args, kwargs)


def _import_libraries() -> threading.Event:
    """Import the libraries in a thread of its own while the first request is read; the event is set once
    they are in. Every request waits for it, the data preview too: `datasets` reads transformers' attributes
    once transformers is in sys.modules, half-made or not."""
    done = threading.Event()

    def run() -> None:
        try:
            from finetune import analysis

            analysis.import_libraries()
        finally:  # a failed import: each request then fails with its own ImportError, as before
            done.set()

    threading.Thread(target=run, daemon=True, name="tuneboard-imports").start()
    return done


class Running:
    """How many requests are being answered, and since when none has been."""

    def __init__(self) -> None:
        self.lock, self.count, self.since = threading.Lock(), 0, time.monotonic()

    def start(self) -> None:
        with self.lock:
            self.count += 1

    def done(self) -> None:
        with self.lock:
            self.count -= 1
            self.since = time.monotonic()

    def idle_for(self, seconds: float) -> bool:
        with self.lock:
            return self.count == 0 and time.monotonic() - self.since >= seconds


def _call(name: str, args: tuple, kwargs: dict) -> tuple[str, Any]:
    from finetune import analysis

    if name not in CALLS:
        return "failed", f"no such analysis: {name!r}"
    try:
        return "ok", getattr(analysis, name)(*args, **kwargs)
    except TuneboardError as exc:
        return "error", exc
    except Exception as exc:  # noqa: BLE001 - the page shows it; the process keeps serving
        return "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


# ---------------------------------------------------------------- the dashboard's handle


class Gone(Exception):
    """The process ended before it answered (its idle exit, a crash)."""


class Channel:
    """One analysis process, its request pipe and the requests it has not answered yet."""

    def __init__(self, log_path: Path | None) -> None:
        idle = {"TUNEBOARD_ANALYST_IDLE": str(os.environ.get("TUNEBOARD_ANALYST_IDLE", IDLE_SECONDS))}
        env = procs.job_env({"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", **idle})
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed once the child has it
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "finetune", "analyst"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            if log:
                log.close()
        self.requests = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.answers = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.waiting: dict[int, Future] = {}
        self.ended = False

    def read(self, lock: threading.Lock) -> None:
        """Hand each answer to its request; once the process has ended, fail the requests it left."""
        while True:
            try:
                request_id, status, value = self.answers.recv()
            except (EOFError, OSError):
                break
            with lock:
                future = self.waiting.pop(request_id, None)
            if future is not None:
                future.set_result((status, value))
        self.answers.close()
        code = self.proc.wait()
        with lock:
            self.ended = True
            self.requests.close()
            left, self.waiting = self.waiting, {}
        for future in left.values():
            future.set_exception(Gone(f"exit code {code}"))


class Analyst:
    """The dashboard's handle on the analysis process: started on first use, started again when it has
    gone; any number of requests in flight at once, from any thread."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path  # the process's stderr (None: the dashboard's own)
        self.lock = threading.Lock()
        self.channel: Channel | None = None
        self.ids = itertools.count(1)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``finetune.analysis.<name>(*args, **kwargs)``'s value, computed in the process; its
        TuneboardError raised here. A request the process ended before answering is sent once more."""
        for attempt in (1, 2):
            try:
                status, value = self._send(name, args, kwargs).result()
            except Gone as exc:
                if attempt == 2:
                    raise JobError(f"the analysis process stopped ({exc}); try again") from None
                continue
            if status == "ok":
                return value
            if status == "error":
                raise value
            raise JobError(f"the analysis failed: {value}")
        raise AssertionError("unreachable")

    def _send(self, name: str, args: tuple, kwargs: dict) -> Future:
        future: Future = Future()
        with self.lock:
            if self.channel is None or self.channel.ended:
                self.channel = Channel(self.log_path)
                threading.Thread(
                    target=self.channel.read, args=(self.lock,), daemon=True, name="tuneboard-analyst"
                ).start()
            request_id = next(self.ids)
            self.channel.waiting[request_id] = future
            try:
                self.channel.requests.send((request_id, name, args, kwargs))
            except OSError:  # it is exiting: its reader fails every waiting request, this one with them
                pass
        return future

    def close(self) -> None:
        """End the process: its stdin closes, it finishes what it is answering and exits."""
        with self.lock:
            if self.channel is not None and not self.channel.ended:
                self.channel.requests.close()
