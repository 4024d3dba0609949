"""Prints the engine's duration estimate for a config (what ``plan`` and the Hyperparameters section show).

    .venv/bin/python bench/estimate.py CONFIG.yaml     # one JSON line: the estimate, or null before any run

finetune/duration.py estimates from the speed the last run (or calibration) of the same model, method and
shapes on this machine recorded in the cache; bench/run.py asks before each CLI round and compares the
answer with how long that round then took.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from finetune import config as cfg
    from finetune import plan

    print(json.dumps(plan.report(cfg.load(sys.argv[1])).get("duration")))


if __name__ == "__main__":
    main()
