"""bench/run.py still works: its quick mode runs end to end and ends with its JSON line (issue 12).

    .venv/bin/pytest tests/test_bench.py -q

One real ``python bench/run.py --quick`` (tiny model, 4 steps, one round of a b c, a 2,000-record statistics
file). No timing is asserted: speed is what bench/RESULTS.md records, measured in one run and given as ratios.
Here only that every variant trained and every figure the issue names is there and positive; without Debian's
chromium the dashboard variant is skipped, and its figures must then be absent rather than made up.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
FIGURES = ("tokens_per_s_vs_trl", "peak_memory_vs_trl", "ui_overhead", "cold_start_s", "app_rss_mb")
FIGURES += ("stats_100k_s", "first_step_s")
DASHBOARD_FIGURES = ("ui_overhead", "cold_start_s", "app_rss_mb", "first_step_s")


@pytest.fixture(scope="module")
def quick() -> tuple[str, dict[str, Any]]:
    """The quick run's printed output and its last line, parsed."""
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])


def with_dashboard(summary: dict[str, Any]) -> bool:
    return summary["dashboard_skipped"] is None


def test_the_dashboard_is_skipped_only_without_a_browser(quick) -> None:
    stdout, summary = quick
    if CHROMIUM.exists():
        assert with_dashboard(summary), summary["dashboard_skipped"]
    else:
        assert "chromium" in summary["dashboard_skipped"]
        assert "(c) Tuneboard dashboard: skipped:" in stdout


def test_the_last_line_holds_every_figure(quick) -> None:
    _, summary = quick
    for key in FIGURES:
        if key in DASHBOARD_FIGURES and not with_dashboard(summary):
            assert summary[key] is None, key
            continue
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0, key
    assert summary["stats"]["file_records"] == 2000 and summary["stats"]["count"] > 0
    assert summary["machine"]["cpu_count"] >= 1 and summary["quick"] is True


def test_every_variant_trained_and_was_measured(quick) -> None:
    stdout, summary = quick
    variants = {"a", "b", "c"} if with_dashboard(summary) else {"a", "b"}
    assert set(summary["runs"]) == variants
    for v, runs in summary["runs"].items():
        (run,) = runs
        assert run["steps"] == summary["hparams"]["steps"], v
        assert run["tokens"] > 0 and run["hook_tokens"] == run["tokens"], v  # the hook counts what TRL does
        assert 0 <= run["padding"] < 1 and run["peak_mb"] > 0 and run["first_step_s"] > 0, v
        assert math.isfinite(run["loss_at_equal"]), v
    for name in ("(a) plain TRL", "(b) Tuneboard CLI", "(b) vs (a)"):
        assert name in stdout


def test_the_dashboard_trains_the_cli_config(quick) -> None:
    _, summary = quick
    if not with_dashboard(summary):
        pytest.skip("the dashboard variant needs chromium")
    assert summary["config_drift"] == []
    assert summary["dashboard"]["app_idle_rss_mb"] > 0
