"""Prints the engine's duration and memory estimates for a config (what ``plan`` and the Hyperparameters
section show).

    .venv/bin/python bench/estimate.py CONFIG.yaml     # one JSON line: {"duration": ..., "memory": ...}

finetune/duration.py estimates from the speed the last run (or calibration) of the same model, method and
shapes on this machine recorded in the cache (null before any); finetune/memory.py from the model's config
and the longest record. bench/run.py asks before each CLI round and compares the answers with how long that
round then took and the peak memory it reached.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from finetune import config as cfg
    from finetune import plan

    report = plan.report(cfg.load(sys.argv[1]))
    print(json.dumps({"duration": report.get("duration"), "memory": report.get("memory")}))


if __name__ == "__main__":
    main()
