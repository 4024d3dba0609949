"""Times the token-length statistics of a dataset as the engine computes them for ``plan`` and the page.

    .venv/bin/python bench/token_stats.py CONFIG.yaml     # one JSON line: seconds, records, count, ...

``finetune.plan.report`` is what ``python -m finetune plan`` prints and what the page's Dataset section
shows (finetune/ui/previews.py calls it): it reads the dataset, renders the records with the template,
tokenizes them and summarises their lengths (finetune.data.length_stats). The heavy libraries are imported
before the clock starts, as in the page's process once it has answered once; the clock covers the call.
``count`` is how many records the statistics cover (fewer than ``records`` when the engine samples).
bench/run.py runs this in a fresh process per measurement, on a fresh datasets cache.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import datasets  # noqa: F401 - imported before the clock starts
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    from finetune import config as cfg
    from finetune import plan

    config = cfg.load(sys.argv[1])
    started = time.perf_counter()
    report = plan.report(config)
    seconds = time.perf_counter() - started
    lengths = report["dataset"]["lengths"]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "records": report["dataset"]["records"],
                "count": lengths.get("count"),
                "p50": lengths.get("p50"),
                "max": lengths.get("max"),
            }
        )
    )


if __name__ == "__main__":
    main()
