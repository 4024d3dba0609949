"""Side-by-side training throughput of the demo model under different methods, in one run.

    .venv/bin/python bench/bench_train.py [--steps 40] [--model builtin:tiny-llama]

Each variant is a real `python -m finetune train` subprocess on the bundled sample data; the script reads
tokens/s from metrics.jsonl and each process's own peak RSS (wait4), and prints ratios against the first.
Absolute numbers depend on the machine; the ratios are what to compare (results: bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "lora": ["--method", "lora", "--tokens.add", "[]"],
    "lora + new token rows": ["--method", "lora"],
    "full": ["--method", "full"],
    "lora + gradient checkpointing": [
        "--method",
        "lora",
        "--tokens.add",
        "[]",
        "--training.gradient_checkpointing",
        "true",
    ],
}


def run(name: str, extra: list[str], steps: int, model: str, out: Path) -> dict[str, float]:
    run_dir = out / name.replace(" ", "_").replace("+", "")
    cmd = [
        sys.executable,
        "-m",
        "finetune",
        "train",
        "presets/demo.yaml",
        "--run-dir",
        str(run_dir),
        "--model.name_or_path",
        model,
        "--training.max_steps",
        str(steps),
        "--training.logging_steps",
        "5",
        "--training.save_strategy",
        "no",
        "--training.report_to",
        "none",
        *extra,
    ]
    log = out / f"{run_dir.name}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the maximum over all children
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{log.read_text()[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_second"] for r in rows if "tokens_per_second" in r]
    runtime = next((r["train_runtime"] for r in rows if "train_runtime" in r), float("nan"))
    return {
        "tokens_per_second": statistics.median(rates),
        "runtime": runtime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="builtin:tiny-llama")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            name: run(name, extra, args.steps, args.model, Path(tmp)) for name, extra in VARIANTS.items()
        }
    base = next(iter(results.values()))
    print(f"model {args.model}, {args.steps} steps each, batch 8, on {os.cpu_count()} CPU cores")
    print(f"{'variant':<32}{'tokens/s':>10}{'ratio':>8}{'runtime s':>11}{'peak RSS MB':>13}{'ratio':>8}")
    for name, r in results.items():
        speed = r["tokens_per_second"] / base["tokens_per_second"]
        memory = r["peak_rss_mb"] / base["peak_rss_mb"]
        print(
            f"{name:<32}{r['tokens_per_second']:>10.0f}{speed:>8.2f}{r['runtime']:>11.1f}"
            f"{r['peak_rss_mb']:>13.0f}{memory:>8.2f}"
        )


if __name__ == "__main__":
    main()
