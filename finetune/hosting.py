"""Where the app runs: a Hugging Face Space or not, on what hardware, and whether its data directory
survives a restart. The page warns from these; the queue refuses to start a run where none can run.

    .venv/bin/pytest tests/test_hosting.py -q

A Space sets SYSTEM=spaces and SPACE_ID=owner/name; ZeroGPU hardware adds SPACES_ZERO_GPU=true. A Space's
own disk is wiped on every restart; a Storage Bucket mounted read-write (`hf spaces volumes set ... -v
hf://buckets/OWNER/BUCKET:/data`) is another filesystem, so a data directory on the same filesystem as the
app's own files is taken as ephemeral.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from finetune.errors import JobError

APP_DIR = Path(__file__).resolve().parent.parent  # where a Space clones its repository
TRUE = {"1", "true", "yes", "on"}
GPU_HARDWARE = "L4, L40S, A10G, A100 or H100"  # Space hardware a background run can use


def on_space(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("SYSTEM") == "spaces" or bool(environ.get("SPACE_ID"))


def zero_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """ZeroGPU lends a GPU to one decorated function call for about 60 s, on a daily quota of minutes: a
    training run in its own background process never gets one."""
    return on_space(environ) and environ.get("SPACES_ZERO_GPU", "").strip().lower() in TRUE


def ephemeral(home: Path, environ: Mapping[str, str] = os.environ, app_dir: Path = APP_DIR) -> bool:
    """On a Space: the data directory lies on the Space's own disk (the app's filesystem), not on a
    mounted bucket, so its runs, models and uploads vanish on the next restart."""
    if not on_space(environ):
        return False
    folder = Path(home)
    while not folder.exists() and folder != folder.parent:  # not made yet: it will be made on that disk
        folder = folder.parent
    return folder.stat().st_dev == app_dir.stat().st_dev


def check_can_train(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse a background run where none can run, before a run directory is written."""
    if zero_gpu(environ):
        raise JobError(
            "this Space runs on ZeroGPU hardware, which lends a GPU to one function call for about a "
            "minute at a time: a training run cannot run in the background there. In the Space's "
            f"settings, pick GPU hardware ({GPU_HARDWARE}); everything before Start works meanwhile"
        )
