"""finetune/failures.py: a failed run's reason says what happened and what to change.

.venv/bin/pytest tests/test_failures.py -q
"""

from __future__ import annotations

from finetune import failures


def test_reason_is_the_type_and_first_line() -> None:
    exc = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nlong details...")
    assert failures.reason_of(exc) == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "interrupted" in failures.reason_of(KeyboardInterrupt())
    assert len(failures.reason_of(ValueError("x" * 5000))) <= failures.MAX_REASON


def test_known_causes_get_their_fix() -> None:
    oom = failures.explain("OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "per_device_train_batch_size" in oom and "gradient_checkpointing" in oom
    disk = failures.explain("OSError: [Errno 28] No space left on device")
    assert "disk is full" in disk and "Resume" in disk
    killed = failures.explain("the training process (pid 7) was killed by SIGKILL")
    assert "ran out of memory" in killed
    tail = ["...", "torch.OutOfMemoryError: CUDA out of memory"]
    from_log = failures.explain("ended without a result", tail)
    assert "per_device_train_batch_size" in from_log
    assert failures.explain("ValueError: something new") == "ValueError: something new"
