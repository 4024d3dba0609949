"""Why a run failed, in one line with the fix: from the exception, or from the last lines of its log.

(used by finetune/train.py for exceptions and finetune/jobs.py for processes that died silently)
"""

from __future__ import annotations

import re

# (pattern found in the error or the log tail, what to do about it)
HINTS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I),
        "out of GPU memory: lower training.per_device_train_batch_size (raise "
        "gradient_accumulation_steps to keep the effective batch), lower dataset.max_length, turn on "
        "training.gradient_checkpointing, or use method lora/qlora",
    ),
    (
        re.compile(r"No space left on device|ENOSPC", re.I),
        "the disk is full: free space or point TUNEBOARD_HOME at a bigger disk, then Resume",
    ),
    (
        re.compile(r"Read-only file system|EROFS", re.I),
        "the data directory is read-only: point TUNEBOARD_HOME at a writable folder",
    ),
    (
        re.compile(r"SIGKILL|out-of-memory killer|^Killed$", re.I | re.M),
        "if nobody ran kill -9, the machine ran out of memory: lower the batch size or max_length",
    ),
    (
        re.compile(r"(FileNotFoundError|No such file).*(dataset|\.csv|\.jsonl?|\.parquet|\.tsv)"),
        "the dataset file disappeared while the run needed it: put it back (dataset.path), then Resume",
    ),
]
MAX_REASON = 500


def reason_of(exc: BaseException) -> str:
    """``Type: first line of the message``, kept short."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted before a checkpoint could be saved"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")[:MAX_REASON]


def explain(reason: str, log_tail: list[str] | None = None) -> str:
    """``reason`` plus the fix for the first known cause found in it or in the log tail."""
    haystack = "\n".join([reason, *(log_tail or [])])
    for pattern, hint in HINTS:
        if pattern.search(haystack) and hint not in reason:
            return f"{reason} -- {hint}"[: MAX_REASON * 2]
    return reason
