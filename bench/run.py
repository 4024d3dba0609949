"""Tuneboard against a plain TRL script, side by side in one run: the CLI, the dashboard, and the same script.

    .venv/bin/python bench/run.py [--repeats 2] [--steps 40] [--records 3000]     # make bench
    .venv/bin/python bench/run.py --quick        # tiny sizes, a minute or two (tests/test_bench.py)

On the same model, data and hyperparameters, interleaved (a b c a b c ...):
  (a) bench/plain_trl.py: a TRL SFTTrainer script as TRL's docs write it, TRL's defaults;
  (b) ``python -m finetune train CONFIG.yaml --run-dir DIR``: Tuneboard's CLI;
  (c) ``python app.py``, the config loaded into the page and started with its Start button
      (bench/dashboard.py; skipped with the reason when chromium, playwright or cryptography are missing).
Each is its own process, measured alike (bench/measure.py, bench/hook/sitecustomize.py): non-padding
tokens per second (TRL's num_tokens over train_runtime), seconds per optimizer step, the share of token slots
that are padding, the training's peak memory (VmHWM on a CPU, torch.cuda.max_memory_allocated on a GPU), the
loss at equal tokens seen (the fewest tokens any run reached), and the seconds from launch (or Start) to the
first training step. Then the ratios against (a), the dashboard's cold start (``python app.py`` until "/"
answers), its process's RSS while its run trains, and the seconds the engine takes to compute token-length
statistics of a 100,000-record JSONL (bench/token_stats.py). Before each CLI round, the engine's duration
estimate (bench/estimate.py: what ``plan`` and the page show, from the speed the runs before it recorded) is
printed beside how long the round then took; ``duration_error`` is the largest relative miss.

The model is Llama-shaped with random weights, built here (bench/workload.py: hidden 256, 4 layers; --quick:
hidden 64, 2 layers) with builtin:tiny-llama's tokenizer; the data is a generated chat set with log-normal
answer lengths (about 42% padding in random batches of 8). All variants train every token of a conversation
(plain TRL's default; Tuneboard's own default is assistant tokens only, set to all here so the losses compare;
the computed tokens are the same either way). Each run of the bench has caches of its own (TUNEBOARD_CACHE,
HF_DATASETS_CACHE): the first round's (a) and (b) tokenize the data, later runs may find it done (the
first-step figure of each run is in the JSON line). On a GPU, bench/gpu.py then runs (a) and (b) on
Llama-3.2-1B and Qwen2.5-0.5B shapes, LoRA and full, and prints MFU. The last line printed is one JSON
object: the ratios, the dashboard and statistics figures, every run's numbers and the machine.
Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import dashboard  # noqa: E402 - bench/ modules, beside this script
import gpu  # noqa: E402
import measure  # noqa: E402
import workload  # noqa: E402

VARIANTS = {"a": "plain TRL", "b": "Tuneboard CLI", "c": "Tuneboard dashboard"}
RUN_TIMEOUT_S = 1800.0


@dataclass
class Setup:
    """What every variant shares: the folders, the model, the data, the numbers, the environment."""

    work: Path
    model: Path
    data: Path
    records: int
    hp: workload.Hparams
    config: dict[str, Any]
    env: dict[str, str]
    cuda: bool
    quick: bool


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (the test suite's)")
    parser.add_argument("--repeats", type=int, help="rounds of a b c (default 2; 1 on a GPU or --quick)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 40; --quick 4)")
    parser.add_argument("--records", type=int, help="records in the chat set (default 3000; --quick 200)")
    parser.add_argument("--stats-records", type=int, help="records timed for statistics (default 100000)")
    parser.add_argument("--no-dashboard", action="store_true", help="skip variant (c)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    return parser.parse_args()


def engine_cache(work: Path) -> Path:
    """A TUNEBOARD_CACHE of this run's own: the engine's caches (encoded records, the speed a finished run
    records for ``plan``) start empty, no earlier bench warms them and none of the bench's runs reach the
    user's. The tiny model the page's default config names, and the library defaults the config checks
    read, are copied in from the user's cache rather than rebuilt (a file that is not there is rebuilt)."""
    from finetune import builtin
    from finetune import config as cfg

    tiny = Path(builtin.resolve("builtin:tiny-llama"))
    cfg.library_defaults()
    cache = work / "tuneboard-cache"
    shutil.copytree(tiny, cache / tiny.name, dirs_exist_ok=True)
    for defaults in builtin.cache_root().glob("sft-config-*.json"):
        shutil.copy2(defaults, cache / defaults.name)
    return cache


def child_env(work: Path) -> dict[str, str]:
    """Every variant's environment: offline, the counting hook on the path, caches of this run's own."""
    return os.environ | {
        "PYTHONPATH": str(BENCH / "hook"),
        "TUNEBOARD_CACHE": str(engine_cache(work)),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(work / "hf-datasets"),
        "TOKENIZERS_PARALLELISM": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }


def prepare(work: Path, args: argparse.Namespace, cuda: bool) -> Setup:
    """Build (or reuse, from the user's TUNEBOARD_CACHE) the model, write the chat set and the config."""
    from finetune import builtin

    shape = workload.QUICK_SHAPE if args.quick else workload.CPU_SHAPE
    model = workload.build_model(shape, builtin.cache_root() / "bench" / f"{shape.name}-v1")
    records = args.records or (200 if args.quick else 3000)
    data = workload.write_jsonl(work / "chats.jsonl", workload.chat_records(records))
    steps, logging = args.steps or (4 if args.quick else 40), 2 if args.quick else 5
    steps = -(-steps // logging) * logging  # a multiple of logging_steps: the last log holds every token
    hp = workload.Hparams(
        batch_size=8, learning_rate=1e-3, steps=steps, max_length=512, logging_steps=logging
    )
    config = workload.tuneboard_config(model, data, hp)
    return Setup(work, model, data, records, hp, config, child_env(work), cuda, args.quick)


def beside(out: Path, suffix: str) -> Path:
    """OUT + suffix (not Path.with_suffix: the names hold dots, as in qwen2.5-0.5b)."""
    return out.with_name(out.name + suffix)


def spawn(argv: list[str], log: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv`` in ROOT to its end; returns (time.time() at launch, its peak RSS in MB from wait4)."""
    started = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    timer = threading.Timer(RUN_TIMEOUT_S, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the maximum over all children
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    return started, usage.ru_maxrss / 1024  # Linux reports KiB


def run_plain(setup: Setup, out: Path) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(BENCH / "plain_trl.py"),
        *workload.plain_args(setup.model, setup.data, out, setup.hp),
    ]
    started, process_peak = spawn(argv, beside(out, ".log"), setup.env)
    return measure.result(out, started, process_peak_mb=process_peak)


def run_cli(setup: Setup, out: Path) -> dict[str, Any]:
    config = workload.write_config(beside(out, ".yaml"), setup.config)
    said = estimates(setup, config)  # duration: from the speed the runs before this one recorded
    argv = [sys.executable, "-m", "finetune", "train", str(config), "--run-dir", str(out)]
    started, process_peak = spawn(argv, beside(out, ".log"), setup.env)
    got = measure.result(out, started, process_peak_mb=process_peak)
    if estimate := said.get("duration"):  # it covers the process's start-up to its first step, then training
        actual = got["first_step_s"] + got["train_runtime"]
        got["estimate"] = estimate | {"actual_s": actual, "error": estimate["seconds"] / actual - 1}
    if said.get("memory"):
        got["memory_estimate"] = memory_check(said["memory"], got["peak_mb"], setup.cuda)
    return got


def memory_check(memory: dict[str, float], peak_mb: float, cuda: bool) -> dict[str, float]:
    """The engine's peak-memory estimate against the measured peak: the process's VmHWM on a CPU; on a GPU
    torch.cuda.max_memory_allocated, which leaves out the CUDA context (the estimate's runtime part)."""
    said = memory["total"] - (memory["runtime"] if cuda else 0.0)
    measured = peak_mb / 1024
    return {"estimate_gb": said, "measured_gb": measured, "error": said / measured - 1}


def estimates(setup: Setup, config: Path) -> dict[str, Any]:
    """The engine's estimates for ``config`` (bench/estimate.py, in the runs' environment)."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "estimate.py"), str(config)],
        cwd=ROOT, env=setup.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"estimate.py failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_dashboard(setup: Setup, out: Path) -> dict[str, Any]:
    grace = 10.0 if setup.quick else 30.0  # for the trainer to exit once training ended (bench/dashboard.py)
    got = dashboard.run(setup.config, setup.records, out, setup.env, timeout=RUN_TIMEOUT_S, grace=grace)
    run_dir = got.pop("run_dir")
    return measure.result(run_dir, got.pop("started_at"), run_dir=str(run_dir), **got)


RUNNERS = {"a": run_plain, "b": run_cli, "c": run_dashboard}


def interleaved(setup: Setup, variants: list[str], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """a b c a b c ...: each round runs every variant once, so a slow patch of the machine hits them alike."""
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    total = repeats * len(variants)
    for round_ in range(repeats):
        for v in variants:
            began = time.monotonic()
            got = RUNNERS[v](setup, setup.work / f"{v}{round_ + 1}")
            got["wall_s"] = time.monotonic() - began
            results[v].append(got)
            done = sum(len(r) for r in results.values())
            print(
                f"[{done}/{total}] ({v}) {VARIANTS[v]}: {got['tokens_per_s']:,.0f} tokens/s, "
                f"{got['s_per_step']:.3f} s/step, padding {got['padding']:.0%}, "
                f"peak {got['peak_mb']:,.0f} MB, first step {got['first_step_s']:.1f} s "
                f"({got['wall_s']:.0f} s in all)",
                flush=True,
            )
    return results


def same_config(results: dict[str, list[dict[str, Any]]], setup: Setup) -> list[str]:
    """Effective values of the dashboard's run that differ from the CLI's (after.* aside: not training)."""
    if not results.get("c") or not results.get("b"):
        return []
    import yaml

    from finetune.config import flatten

    def effective(run_dir: Path) -> dict[str, Any]:
        data = yaml.safe_load((run_dir / "effective_config.yaml").read_text(encoding="utf-8"))
        return {k: v for k, v in flatten(data).items() if not k.startswith(("after.", "training.output_dir"))}

    page, cli = effective(Path(results["c"][0]["run_dir"])), effective(setup.work / "b1")
    return sorted(k for k in page.keys() | cli.keys() if page.get(k) != cli.get(k))


def time_stats(setup: Setup, records: int) -> dict[str, Any]:
    """The engine's token-length statistics of a ``records``-record JSONL, timed in a fresh process."""
    data = workload.write_jsonl(setup.work / "stats.jsonl", workload.chat_records(records, seed=1))
    config = {**setup.config, "dataset": {**setup.config["dataset"], "path": str(data)}}
    path = workload.write_config(setup.work / "stats.yaml", config)
    env = setup.env | {"HF_DATASETS_CACHE": str(setup.work / "hf-datasets-stats")}  # cold, as a new upload
    proc = subprocess.run(
        [sys.executable, str(BENCH / "token_stats.py"), str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"token_stats.py failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"file_records": records}


def machine(cuda: bool) -> dict[str, Any]:
    import torch

    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = next(int(row.split()[1]) for row in meminfo if row.startswith("MemTotal"))
    cpu = f"CPU ({platform.processor() or platform.machine()})"
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": round(total_kb / 2**20, 1),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else cpu,
        "python": platform.python_version(),
    }


COLUMNS = ("tokens_per_s", "s_per_step", "padding", "peak_mb", "loss_at_equal", "first_step_s")


def medians(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    return {v: {key: measure.median(runs, key) for key in COLUMNS} for v, runs in results.items()}


def dashboard_figures(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = ("cold_start_s", "app_idle_rss_mb", "app_rss_max_mb", "app_rss_mean_mb", "app_cpu_share")
    keys += ("browser_cpu_share", "helpers_cpu_share", "app_anon_mb", "app_file_mb", "app_pss_mb")
    return {key: measure.median(runs, key) for key in keys}


def summary(
    results: dict[str, list[dict[str, Any]]], stats: dict[str, Any], setup: Setup, extra: dict[str, Any]
) -> dict[str, Any]:
    """The last line's object: the ratios the issue names first, then everything they came from."""
    med = medians(results)
    a, b, c = med["a"], med["b"], med.get("c", {})
    page = dashboard_figures(results.get("c", []))
    return {
        "tokens_per_s_vs_trl": measure.ratio(b["tokens_per_s"], a["tokens_per_s"]),
        "peak_memory_vs_trl": measure.ratio(b["peak_mb"], a["peak_mb"]),
        "ui_overhead": measure.ratio(c.get("tokens_per_s"), b["tokens_per_s"]),
        "cold_start_s": page["cold_start_s"],
        "app_rss_mb": page["app_rss_max_mb"],
        "stats_100k_s": stats["seconds"],
        "first_step_s": c.get("first_step_s"),
        "duration_error": duration_error(results.get("b", [])),
        "memory_estimate_error": memory_error(results.get("b", [])),
        "dashboard_tokens_per_s_vs_trl": measure.ratio(c.get("tokens_per_s"), a["tokens_per_s"]),
        "loss_vs_trl": measure.ratio(b["loss_at_equal"], a["loss_at_equal"]),
        "stats": stats,
        "dashboard": page,
        "medians": med,
        "runs": {
            v: [{k: x for k, x in r.items() if k != "losses"} for r in runs] for v, runs in results.items()
        },
        "hparams": vars(setup.hp) | {"records": setup.records, "model": setup.model.name},
        "machine": machine(setup.cuda),
        **extra,
    }


def duration_error(runs: list[dict[str, Any]]) -> float | None:
    """The largest relative error of the duration estimates made before the CLI rounds (None: none made)."""
    errors = [abs(r["estimate"]["error"]) for r in runs if r.get("estimate")]
    return max(errors) if errors else None


def memory_error(runs: list[dict[str, Any]]) -> float | None:
    """The largest relative error of the memory estimates against the CLI rounds' peaks."""
    errors = [abs(r["memory_estimate"]["error"]) for r in runs if r.get("memory_estimate")]
    return max(errors) if errors else None


def cell(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def line(cells: list[str]) -> str:
    widths = (24, 10, 9, 9, 9, 16, 12)
    return cells[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))


def variant_cells(v: str, m: dict[str, float | None]) -> list[str]:
    return [
        f"({v}) {VARIANTS[v]}",
        cell(m["tokens_per_s"], ",.0f"),
        cell(m["s_per_step"], ".3f"),
        cell(m["padding"], ".1%"),
        cell(m["peak_mb"], ",.0f"),
        cell(m["loss_at_equal"], ".4f"),
        cell(m["first_step_s"], ".1f"),
    ]


def ratio_cells(v: str, m: dict[str, float | None], a: dict[str, float | None]) -> list[str]:
    """(v) against (a): ratios of speed and memory; differences of padding (points) and loss."""
    ratio = lambda key: cell(measure.ratio(m[key], a[key]), ".2f", "x")  # noqa: E731
    difference = lambda key, scale, fmt: cell(  # noqa: E731
        None if m[key] is None or a[key] is None else scale * (m[key] - a[key]), fmt
    )
    return [
        f"({v}) vs (a)",
        ratio("tokens_per_s"),
        ratio("s_per_step"),
        difference("padding", 100, "+.1f") + "pt",
        ratio("peak_mb"),
        difference("loss_at_equal", 1, "+.4f"),
        difference("first_step_s", 1, "+.1f"),
    ]


def print_table(med: dict[str, dict[str, float | None]], equal_tokens: float) -> None:
    head = ["variant", "tokens/s", "s/step", "padding", "peak MB", f"loss@{equal_tokens:,.0f}", "1st step s"]
    print(line(head))
    for v, m in med.items():
        print(line(variant_cells(v, m)))
    for v, m in med.items():
        if v != "a":
            print(line(ratio_cells(v, m, med["a"])))


def print_report(out: dict[str, Any], equal_tokens: float, skipped: str | None, drift: list[str]) -> None:
    print()
    print_table(out["medians"], equal_tokens)
    page, stats = out["dashboard"], out["stats"]
    if skipped:
        print(f"(c) Tuneboard dashboard: skipped: {skipped}")
    else:
        print(
            f"dashboard: cold start {page['cold_start_s']:.1f} s (python app.py until '/' answers); "
            f"Start -> first step {out['first_step_s']:.1f} s; (c)/(b) tokens/s {out['ui_overhead']:.2f}x"
        )
        print(
            f"  app RSS {page['app_idle_rss_mb']:,.0f} MB idle, {page['app_rss_max_mb']:,.0f} MB max while "
            f"its run trains; CPU meanwhile: app {page['app_cpu_share']:.0%} of a core, the browser showing "
            f"the page {page['browser_cpu_share']:.0%}, the analysis process {page['helpers_cpu_share']:.0%}"
        )
        if page.get("app_pss_mb"):
            print(
                f"  of the app's RSS: {page['app_anon_mb']:,.0f} MB its own, {page['app_file_mb']:,.0f} MB "
                f"of files (libraries' code, shared with its trainer); PSS {page['app_pss_mb']:,.0f} MB"
            )
        same = "the same as the CLI's" if not drift else f"differs from the CLI's in {', '.join(drift)}"
        print(f"  its run's effective config (after.* aside) is {same}")
    for n, run in enumerate(out["runs"]["b"], 1):
        est = run.get("estimate")
        said = "no estimate (no run had recorded this speed yet)"
        if est:
            said = (f"estimated {est['seconds']:.0f} s ({est['low']:.0f}-{est['high']:.0f}, from the "
                    f"{est['source']}), took {est['actual_s']:.0f} s: {est['error']:+.0%}")  # fmt: skip
        print(f"duration of CLI round {n}: {said}")
        if mem := run.get("memory_estimate"):
            print(f"  peak memory: estimated {mem['estimate_gb']:.2f} GiB, measured "
                  f"{mem['measured_gb']:.2f} GiB: {mem['error']:+.0%}")  # fmt: skip
    print(
        f"token statistics of a {stats['file_records']:,}-record JSONL: {stats['seconds']:.1f} s "
        f"(the engine's statistics cover {stats['count']:,} of its records)"
    )


def header(setup: Setup, repeats: int, variants: list[str]) -> str:
    hp, shape = setup.hp, json.loads((setup.model / "config.json").read_text())
    size = f"hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, vocab {shape['vocab_size']}"
    return (
        f"model {setup.model.name} ({size}, random weights); {setup.records:,} chats; batch {hp.batch_size}, "
        f"lr {hp.learning_rate}, {hp.steps} steps, max_length {hp.max_length}, {hp.method}; "
        f"{repeats} round(s) of {' '.join(variants)}"
    )


def workdir(keep: Path | None) -> Any:
    """A temp folder removed at the end, or ``--keep DIR`` (created, and left for a look afterwards)."""
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(str(keep))
    return tempfile.TemporaryDirectory(prefix="tuneboard-bench-", ignore_cleanup_errors=True)


def main() -> None:
    args = parse()
    import torch

    cuda = torch.cuda.is_available()
    repeats = args.repeats or (1 if args.quick or cuda else 2)
    skipped = "--no-dashboard" if args.no_dashboard else dashboard.missing()
    variants = ["a", "b"] + ([] if skipped else ["c"])
    started = time.monotonic()
    with workdir(args.keep) as work:
        setup = prepare(Path(work), args, cuda)
        print(header(setup, repeats, variants), flush=True)
        if skipped:
            print(f"(c) Tuneboard dashboard: skipped: {skipped}", flush=True)
        results = interleaved(setup, variants, repeats)
        equal_tokens = measure.add_equal_token_losses(results)
        stats = time_stats(setup, args.stats_records or (2000 if args.quick else 100_000))
        drift = same_config(results, setup)
        gpu_runs = gpu.run_all(setup, args.quick, {"a": run_plain, "b": run_cli}) if cuda else []
    extra = {
        "dashboard_skipped": skipped,
        "config_drift": drift,
        "equal_tokens": equal_tokens,
        "gpu": gpu_runs,
    }
    out = summary(results, stats, setup, extra | {"quick": args.quick})
    out["seconds"] = time.monotonic() - started
    print_report(out, equal_tokens, skipped, drift)
    if gpu_runs:
        gpu.print_table(gpu_runs)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
