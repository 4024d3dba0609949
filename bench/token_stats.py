"""Times the token-length statistics of a dataset as the engine computes them for ``plan`` and the page.

    .venv/bin/python bench/token_stats.py CONFIG.yaml     # one JSON line: seconds, records, count, ...

The clock covers what ``python -m finetune plan`` does: ``preflight.run`` (read and check the dataset, keep
the first records), ``plan.lengths`` (every record rendered with the template and tokenized, where that is
cheap: finetune.preflight.all_lengths; the page's Dataset section runs the same in the background) and
``plan.report`` (finetune.data.length_stats summarises them). The heavy libraries are imported before the
clock starts, as in the page's process once it has answered once. ``count`` is how many records the
statistics cover (fewer than ``records`` when the engine samples).
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
    from trl import SFTConfig  # noqa: F401 - trl imports it on first use (plan.report's training arguments)

    from finetune import config as cfg
    from finetune import plan, preflight

    config = cfg.load(sys.argv[1])
    started = time.perf_counter()
    checked = preflight.run(config, sample=plan.SAMPLE)
    report = plan.report(config, checked, plan.lengths(checked))
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
