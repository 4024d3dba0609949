"""Counts what every training batch holds, the same way for all of bench/run.py's variants; changes nothing.

    PYTHONPATH=bench/hook python bench/plain_trl.py ...   # bench/run.py sets this for each variant

Python imports ``sitecustomize`` from the path at start-up. This one only installs an import hook, so a
process that never imports transformers' Trainer (the dashboard itself) pays nothing. Once
``transformers.trainer`` is imported, two methods are wrapped:

- ``Trainer.training_step``: per micro-batch, the token slots (``input_ids.numel()``) and the real tokens
  (``attention_mask.sum()``, or every slot of a padding-free batch, which has no mask: what TRL's num_tokens
  counts), and the wall-clock time and the process's RSS when the first step returned;
- ``Trainer.train``: when it returns, the process's peak RSS (VmHWM) and, on a GPU,
  ``torch.cuda.max_memory_allocated()``: the training's peak, before the final save or the stop check.

The counts go to OUTPUT_DIR/bench_batches.json (OUTPUT_DIR: the trainer's ``args.output_dir``, a run
directory for Tuneboard) after the first step and at the end of ``train``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

TARGET = "transformers.trainer"
COUNTS_FILE = "bench_batches.json"
_counts: dict[str, Any] = {"micro_batches": 0, "slots": 0, "real_tokens": 0}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds transformers.trainer with the other finders, and wraps its Trainer once the module ran."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)  # once, and no recursion into this finder
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            _wrap(module.Trainer)

        spec.loader.exec_module = exec_module
        return spec


def _wrap(trainer_cls: type) -> None:
    step, train = trainer_cls.training_step, trainer_cls.train

    def training_step(self: Any, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        _count(inputs)
        loss = step(self, model, inputs, *args, **kwargs)
        if "first_step_at" not in _counts:
            _counts["first_step_at"] = time.time()
            _counts["rss_at_first_step_kb"] = _status_kb("VmRSS")  # the runtime, model and data, before peaks
            _write(self)
        return loss

    def wrapped_train(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = train(self, *args, **kwargs)
        _counts["train_end_at"] = time.time()
        _counts["peak_rss_kb"] = _status_kb("VmHWM")
        _counts["cuda_peak_bytes"] = _cuda_peak()
        _write(self)
        return result

    trainer_cls.training_step = training_step
    trainer_cls.train = wrapped_train


def _count(inputs: Any) -> None:
    ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
    if ids is None:
        return
    mask = inputs.get("attention_mask")
    _counts["micro_batches"] += 1
    _counts["slots"] += int(ids.numel())
    _counts["real_tokens"] += int(mask.sum()) if mask is not None else int(ids.numel())


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cuda_peak() -> int | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def _write(trainer: Any) -> None:
    out = Path(trainer.args.output_dir) / COUNTS_FILE
    if not out.parent.is_dir() or not trainer.is_world_process_zero():
        return
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_counts), encoding="utf-8")
    tmp.replace(out)


sys.meta_path.insert(0, _AfterImport())
