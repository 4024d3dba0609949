"""The inference worker: one process, outside the dashboard, that holds a run's model (and its base, to
compare) and answers. The page talks to it through :class:`Worker`; it never loads a model itself.

    python -m finetune worker        # what Worker starts; reads JSON requests on stdin, one a line
    .venv/bin/pytest tests/test_worker.py -q

Requests and what comes back (one JSON object a line; any failure -> {"error": ..., "field": ...}):
    {"op": "load", "slot": "tuned"|"base", "run_dir": ..., "checkpoint": N|null, "base": bool}
                                                    -> {"loaded": {...}}  (base: default slot == "base")
    {"op": "answer", "slot": ..., "ask": messages|text, "settings": {...}}
                                                    -> {"piece": "..."} per piece, then {"reply": {...}}
    {"op": "classify", "slot": "tuned", "text": ...} -> {"labels": [[name, p], ...]}
    {"op": "check"}  (the stop check of the tuned model, finetune/stops.py) -> {"checked": {...}}
    {"op": "evaluate", "run_dir": ..., "checkpoint": N|null, "base": bool} -> {"evaluated": eval.json}
    {"op": "export", "run_dir": ..., "checkpoint": ..., "merge": bool, "force": bool, "push": "org/name"|null,
     "private": bool} -> {"exported": {"folder": ..., "url": ..., "notes": [...]}}
It exits when stdin closes (the dashboard stopped it, or went away) or after TUNEBOARD_WORKER_IDLE seconds
(default 600) without a request, so an idle model gives its memory back. One worker at a time: on a GPU
box it takes a GPU no run holds or waits for, else the CPU, and says so (never a GPU a training job needs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune import procs, scheduler
from finetune.errors import JobError, TuneboardError

IDLE_SECONDS = float(os.environ.get("TUNEBOARD_WORKER_IDLE", "600"))
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the worker process


def serve(stdin: Any = sys.stdin, stdout: Any = sys.stdout, idle: float = IDLE_SECONDS) -> None:
    """Answer requests until stdin closes or nothing comes for ``idle`` seconds."""
    models: dict[str, Any] = {}

    def say(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
        stdout.flush()

    while select.select([stdin], [], [], idle)[0]:
        line = stdin.readline()
        if not line:
            return
        try:
            _handle(json.loads(line), models, say)
        except TuneboardError as exc:
            say({"error": str(exc), "field": exc.field})
        except Exception as exc:  # noqa: BLE001 - the page shows it; the worker keeps serving
            say({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})


def _handle(request: dict[str, Any], models: dict[str, Any], say: Any) -> None:
    from finetune import inference

    op, slot = request["op"], request.get("slot", "tuned")
    if op == "load":
        started = time.perf_counter()
        run_dir = Path(request["run_dir"])
        base = request.get("base", slot == "base")  # the "base" slot may hold another run's model instead
        models[slot] = inference.load(run_dir, checkpoint=request.get("checkpoint"), base=base)
        loaded = models[slot]
        say({"loaded": {"weights": loaded.weights, "device": loaded.device, "task": loaded.config.task,
                        "seconds": round(time.perf_counter() - started, 2)}})  # fmt: skip
    elif op == "answer":
        settings = cfg.GenerationConfig.model_validate(request["settings"])
        for item in inference.stream(_model(models, slot), request["ask"], settings):
            say({"piece": item} if isinstance(item, str) else {"reply": dataclasses.asdict(item)})
    elif op == "check":
        from finetune import stops

        result = stops.run_check(_model(models, "tuned"))
        say({"checked": {k: v for k, v in result.items() if k != "answers"}})
    elif op == "classify":
        say({"labels": inference.classify(_model(models, slot), request["text"])})
    elif op in ("evaluate", "export"):
        say(_after(op, request))
    else:
        raise JobError(f"unknown request {op!r}")


def _after(op: str, request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate or export a run (finetune/evaluate.py, finetune/export.py): they load their own models."""
    run_dir, checkpoint = Path(request["run_dir"]), request.get("checkpoint")
    if op == "evaluate":
        from finetune import evaluate

        return {"evaluated": evaluate.run(run_dir, checkpoint=checkpoint, base=request.get("base", True))}
    from finetune import export

    done = export.export(
        run_dir, checkpoint=checkpoint, merge=request["merge"], force=request["force"],
        push=request.get("push"), private=request.get("private", True),
    )  # fmt: skip
    return {"exported": {"folder": str(done.folder), "url": done.url, "notes": done.notes}}


def _model(models: dict[str, Any], slot: str) -> Any:
    if slot not in models:
        raise JobError(f"no {slot} model is loaded: pick a run first")
    return models[slot]


# ---------------------------------------------------------------- the dashboard's side


class Worker:
    """The dashboard's handle on the one worker process: started on first use, restarted if it has gone
    (its idle timeout, a crash), its requests taken one at a time."""

    def __init__(self, runs_root: Path, log_path: Path) -> None:
        self.runs_root, self.log_path = Path(runs_root), Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.device_note: str | None = None  # "gpus_busy": every GPU is training, so the CPU answers
        self.device: str | None = None  # where the loaded model answers
        self.loaded: dict[str, tuple] = {}  # slot -> (run_dir, checkpoint, base) it holds
        self.lock = threading.Lock()
        self.pending = False  # a request's messages are still coming

    def _ensure(self) -> subprocess.Popen:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self.loaded = {}
        gpu = scheduler.free_gpu(self.runs_root)
        self.device_note = None if gpu or not any(s != "cpu" for s in scheduler.slots()) else "gpus_busy"
        env = procs.job_env({"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
                             "CUDA_VISIBLE_DEVICES": gpu or ""})  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "finetune", "worker"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8", start_new_session=True,
            )  # fmt: skip
        return self.proc

    def _ask(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one request; yield what comes back until its last message. Caller holds the lock."""
        proc = self._ensure()
        try:
            proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise JobError("the inference worker stopped; try again") from None
        self.pending = True  # until this request's last message is read (see _drain)
        while True:
            line = proc.stdout.readline()
            if not line:
                self.proc, self.pending = None, False
                raise JobError(f"the inference worker stopped (see {self.log_path})")
            message = json.loads(line)
            self.pending = "piece" in message
            if "error" in message:
                raise JobError(message["error"]) if not message.get("field") else _field_error(message)
            yield message
            if not self.pending:
                return

    def load(
        self, slot: str, run_dir: Path, checkpoint: int | None = None, *, base: bool | None = None
    ) -> dict[str, Any] | None:
        """Load ``run_dir``'s model into ``slot`` unless it is there already (None then). ``base``: its base
        model (default: in the "base" slot), else the tuned one."""
        base = slot == "base" if base is None else base
        key = (str(run_dir), checkpoint, base)
        with self.lock:
            if self.proc is not None and self.proc.poll() is None and self.loaded.get(slot) == key:
                return None
            request = {
                "op": "load",
                "slot": slot,
                "run_dir": str(run_dir),
                "checkpoint": checkpoint,
                "base": base,
            }
            (message,) = list(self._ask(request))
            self.loaded[slot], self.device = key, message["loaded"]["device"]
            return message["loaded"]

    def answer(self, slot: str, ask: Any, settings: cfg.GenerationConfig) -> Iterator[dict[str, Any]]:
        """The answer's pieces, then its reply. Left part-way (the page moved on), the rest is read and
        dropped, so the next request does not read this one's pieces."""
        with self.lock:
            try:
                yield from self._ask(
                    {"op": "answer", "slot": slot, "ask": ask, "settings": settings.model_dump()}
                )
            finally:
                self._drain()

    def _drain(self) -> None:
        """Read what is left of an answer nobody reads any more."""
        while self.pending and self.proc is not None:
            line = self.proc.stdout.readline()
            self.pending = bool(line) and "piece" in json.loads(line)

    def check_stops(self) -> dict[str, Any]:
        """The stop check of the tuned model loaded (finetune/stops.py): written to its run directory."""
        with self.lock:
            (message,) = list(self._ask({"op": "check"}))
        return message["checked"]

    def run(self, op: str, **request: Any) -> dict[str, Any]:
        """A request with one answer (evaluate, export): what came back under its name."""
        with self.lock:
            (message,) = list(self._ask({"op": op, **request}))
        return next(iter(message.values()))

    def classify(self, text: str) -> list[tuple[str, float]]:
        with self.lock:
            (message,) = list(self._ask({"op": "classify", "slot": "tuned", "text": text}))
        return [(name, p) for name, p in message["labels"]]

    def close(self) -> None:
        """Unload: the worker exits and gives its memory (and GPU) back."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.stdin.close()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.proc, self.loaded = None, {}


def _field_error(message: dict[str, Any]) -> TuneboardError:
    from finetune.errors import ConfigError

    return ConfigError([(message["field"], message["error"].split(": ", 1)[-1])])
