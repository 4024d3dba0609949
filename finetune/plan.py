"""What a run will do, before it runs: step arithmetic, a rough memory estimate, warnings.

    python -m finetune plan presets/demo.yaml --training.num_train_epochs 3

The arithmetic follows transformers' Trainer: an epoch is ceil(records / (batch x devices)) micro-batches;
the optimizer updates once per ``gradient_accumulation_steps`` micro-batches, and once more for what is left
at the end of an epoch; a fractional number of epochs is rounded up to whole updates. 10,000 records at
batch 2 for 3 epochs is 15,000 micro-batches; with gradient_accumulation_steps 2 that is 7,500 optimizer
updates. 120 records at batch 7, accumulation 4, 2.5 epochs: 18 micro-batches an epoch (the last holds 1
record), 5 updates an epoch (the last sums 2 micro-batches), 2.5 x 5 = 12.5 -> 13 updates.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from finetune import data, duration, effective, memory, model, preflight, speed


@dataclass(frozen=True)
class Steps:
    records: int
    batch_size: int
    devices: int
    grad_accum: int
    epochs: float
    max_steps: int
    effective_batch: int
    micro_batches_per_epoch: int
    micro_batches: int
    updates_per_epoch: int
    optimizer_steps: int
    warmup_steps: int
    checkpoints: int
    # Where the Trainer rounds up (see :func:`rounding`): an epoch's last micro-batch and last update may be
    # short, and epochs x updates per epoch is rounded up to whole updates.
    last_micro_batch: int  # records in an epoch's last micro-batch (= batch x devices when it is full)
    last_update: int  # micro-batches in an epoch's last update (= grad_accum when it is full)
    epochs_run: float  # epochs of data the optimizer steps really cover

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def steps(
    records: int,
    *,
    batch_size: int = 8,
    grad_accum: int = 1,
    epochs: float = 3.0,
    max_steps: int = -1,
    devices: int = 1,
    warmup: float = 0.0,
    save_strategy: str = "steps",
    save_steps: float = 500,
) -> Steps:
    """Step arithmetic of one run. ``warmup`` below 1 is a ratio of the optimizer steps (transformers 5)."""
    per_micro = batch_size * devices
    micro_per_epoch = max(math.ceil(records / per_micro), 1) if records else 0
    updates_per_epoch = max(math.ceil(micro_per_epoch / grad_accum), 1) if micro_per_epoch else 0
    total = max_steps if max_steps > 0 else math.ceil(epochs * updates_per_epoch)
    # The Trainer runs whole epochs, then stops part-way through the next one after ``rest`` updates.
    whole, rest = divmod(total, updates_per_epoch) if updates_per_epoch else (0, 0)
    micro = whole * micro_per_epoch + rest * grad_accum
    warm = math.ceil(warmup * total) if warmup < 1 else int(warmup)
    return Steps(
        records=records,
        batch_size=batch_size,
        devices=devices,
        grad_accum=grad_accum,
        epochs=epochs,
        max_steps=max_steps,
        effective_batch=batch_size * devices * grad_accum,
        micro_batches_per_epoch=micro_per_epoch,
        micro_batches=micro,
        updates_per_epoch=updates_per_epoch,
        optimizer_steps=total,
        warmup_steps=min(warm, total),
        checkpoints=_checkpoints(total, updates_per_epoch, save_strategy, save_steps),
        last_micro_batch=records - (micro_per_epoch - 1) * per_micro if records else 0,
        last_update=micro_per_epoch - (updates_per_epoch - 1) * grad_accum if micro_per_epoch else 0,
        epochs_run=round(micro / micro_per_epoch, 2) if micro_per_epoch else 0.0,
    )


def rounding(s: Steps) -> dict[str, Any]:
    """Where the step arithmetic rounds up, for the page and the plan to show (a key only where it does).

    ``micro``: records / (batch x devices) as a decimal; ``updates``: micro-batches / accumulation; ``total``:
    epochs x updates per epoch (epoch-based runs only). A person dividing 45 micro-batches by 4 expects 11
    updates; the Trainer makes 13, and these say why.
    """
    out: dict[str, Any] = {}
    if s.records and s.last_micro_batch != s.batch_size * s.devices:
        out["micro"] = s.records / (s.batch_size * s.devices)
    if s.micro_batches_per_epoch and s.last_update != s.grad_accum:
        out["updates"] = s.micro_batches_per_epoch / s.grad_accum
    exact = s.epochs * s.updates_per_epoch
    if s.max_steps <= 0 and s.updates_per_epoch and exact != s.optimizer_steps:
        out["total"] = exact
    return out


def _checkpoints(total: int, per_epoch: int, strategy: str, every: float) -> int:
    if strategy == "no" or total == 0:
        return 0
    if strategy == "epoch":
        return math.ceil(total / per_epoch) if per_epoch else 0
    interval = math.ceil(every * total) if every < 1 else int(every)  # a save_steps below 1 is a ratio
    return total // max(interval, 1)


def steps_from_args(records: int, args: Any, devices: int = 1) -> Steps:
    """:func:`steps` with the values of a built ``TrainingArguments`` / ``SFTConfig``."""
    strategy = getattr(args.save_strategy, "value", args.save_strategy)
    return steps(
        records,
        batch_size=args.per_device_train_batch_size,
        grad_accum=args.gradient_accumulation_steps,
        epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        devices=devices,
        warmup=args.warmup_steps,
        save_strategy=strategy,
        save_steps=args.save_steps,
    )


# Records kept in memory for a plan or the page's previews; every record is still read, checked and counted.
SAMPLE = 5000
# Token statistics cover every record when all of them come to about this many tokens at most (measured at
# ~2 M tokens/s on 2 CPU cores: bench/RESULTS.md); beyond it, the first preflight.LENGTH_SAMPLE records, and
# the statistics say they are a sample.
EVERY_RECORD_TOKENS = 50_000_000


def lengths(checked: Any, progress: Any = None) -> list[int]:
    """Token lengths for the statistics: every record's (preflight.all_lengths) where :func:`every_record`
    says that is cheap, else the first preflight.LENGTH_SAMPLE records'. ``progress(read, total)``."""
    sample = preflight.record_lengths(checked)
    mean = sum(sample) / len(sample) if sample else 0.0
    stats = {"count": len(sample), "records": checked.dataset.n_records, "mean": mean}
    cheap = every_record(checked.config, stats)
    return preflight.all_lengths(checked, progress, known=sample) if cheap else sample


def every_record(config: Any, stats: dict[str, Any]) -> bool:
    """Whether statistics from a sample (``count`` of ``records``, ``mean`` tokens a record) can cheaply be
    computed over every record instead: EVERY_RECORD_TOKENS at most, at the sample's mean; never for a stream
    (dataset.streaming: its statistics come from the first records)."""
    count, records = stats.get("count", 0), stats.get("records", 0)
    cheap = 0 < count < records and records * stats.get("mean", 0) <= EVERY_RECORD_TOKENS
    return cheap and not config.dataset.streaming


def report(config: Any, checked: Any = None, lengths: list[int] | None = None) -> dict[str, Any]:
    """Everything ``plan`` prints, as data: effective values, dataset summary, steps, memory, warnings.

    ``checked``: preflight.run's answer for ``config`` when the caller has it already (the page caches it).
    ``lengths``: the token lengths the statistics describe (:func:`lengths`); by default the first
    preflight.LENGTH_SAMPLE records'. The statistics' ``records`` is how many there are in all: a ``count``
    below it means they come from a sample.
    """
    checked = checked or preflight.run(config, sample=SAMPLE)
    device = model.detect_device()
    has_eval = checked.dataset.n_eval > 0
    cuda = device.kind == "cuda"
    args = effective.training_args(
        config,
        effective.RUN_DIR_PLACEHOLDER,
        cuda=cuda,
        bf16_ok=device.bf16,
        has_eval=has_eval,
        memory_gb=device.memory_gb,
    )
    lengths = preflight.record_lengths(checked) if lengths is None else lengths
    steps = steps_from_args(checked.dataset.n_train, args, config.launch.num_processes)
    stats = data.length_stats(lengths, config.dataset.max_length) if len(lengths) else {}
    if stats:
        stats["records"] = checked.dataset.n_records
    warnings = list(checked.warnings)
    if stats.get("over_max"):
        stats["truncation"] = truncation(stats, config.dataset.max_length, config.task)
        warnings.append(truncation_message(stats["truncation"]))
    if config.training.push_to_hub and not _has_token():
        warnings.append("training.push_to_hub is on but HF_TOKEN is not set in the environment")
    return {
        "effective": effective.effective(
            config, cuda=cuda, bf16_ok=device.bf16, has_eval=has_eval, memory_gb=device.memory_gb
        ),
        "device": device,
        "dataset": {
            "layout": checked.dataset.layout,
            "records": checked.dataset.n_records,
            "train": checked.dataset.n_train,
            "eval": checked.dataset.n_eval,
            "columns": {k: v for k, v in checked.dataset.columns.model_dump().items() if v},
            "lengths": stats,
            "streamed": checked.dataset.streamed,  # records, train and lengths: its first records only
        },
        "template": checked.template.id if checked.template else None,
        "new_tokens": [checked.tokenizer.convert_ids_to_tokens(i) for i in checked.token_changes.new_ids],
        "steps": steps,
        "duration": duration.estimate(duration.key(config, args, device), steps, stats.get("mean_cut", 0)),
        "memory": memory_estimate(config, device, args, stats.get("max") or None),
        "warnings": warnings,
    }


def memory_estimate(config: Any, device: Any, args: Any, longest: int | None) -> dict[str, float] | None:
    """finetune/memory.py's estimate for the run ``args`` describe (``longest``: its longest record)."""
    return memory.estimate(
        config,
        device,
        batch_size=args.per_device_train_batch_size,
        checkpointing=bool(args.gradient_checkpointing),
        longest=longest,
        micro_batch_tokens=speed.micro_batch_tokens(config, device),
    )


def decimal(x: float) -> str:
    """17.142857 -> '17.14', 4.5 -> '4.5', 12000.0 -> '12,000': a quotient as a person would write it."""
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def stream_steps_lines(s: Steps) -> list[str]:
    """A stream's steps: max_steps, and how many records they read (there are no epochs to count)."""
    batch = s.batch_size * s.grad_accum * s.devices
    return [
        f"  max_steps {s.optimizer_steps:,} x (batch {s.batch_size} x accumulation {s.grad_accum} x "
        f"{s.devices} device) = {s.optimizer_steps * batch:,} records read from the stream, in stored order "
        "(a stream has no length, so no epochs)",
    ]


def steps_lines(s: Steps) -> list[str]:
    """The step arithmetic in three lines, each rounding the Trainer does written out where it happens."""
    r = rounding(s)
    micro = f"{s.micro_batches_per_epoch:,} micro-batches per epoch"
    if "micro" in r:
        micro = f"{decimal(r['micro'])}, rounded up: {micro} (the last holds only {s.last_micro_batch})"
    updates = f"{s.updates_per_epoch:,} updates per epoch"
    if "updates" in r:
        updates = (
            f"{s.micro_batches_per_epoch:,} / {s.grad_accum} = {decimal(r['updates'])}, rounded up: "
            f"{updates} (the last sums only {s.last_update})"
        )
    covers = f"{s.micro_batches:,} micro-batches, {decimal(s.epochs_run)} epochs of data"
    if s.max_steps > 0:
        total = f"max_steps {s.max_steps}: {s.optimizer_steps:,} optimizer steps ({covers})"
    elif "total" in r:
        total = (
            f"x {s.epochs:g} epochs = {decimal(r['total'])}, rounded up: "
            f"{s.optimizer_steps:,} optimizer steps ({covers})"
        )
    else:
        total = f"x {s.epochs:g} epochs = {s.optimizer_steps:,} optimizer steps ({covers})"
    return [
        f"  {s.records:,} records / (batch {s.batch_size} x {s.devices} device) = {micro}",
        f"  gradient_accumulation_steps {s.grad_accum}: effective batch {s.effective_batch}; {updates}",
        f"  {total}",
    ]


MAX_SUGGESTED_LENGTH = 32768  # beyond this, raising max_length is no fix: the records are the problem


def truncation(stats: dict[str, Any], max_length: int, task: str) -> dict[str, Any]:
    """What cutting the records over max_length does, as data for the page and the plan: counts from the same
    length statistics section 1 draws, the task (the effect differs) and a max_length that fits them all."""
    suggest = math.ceil(stats["max"] / 64) * 64
    return {
        "over": stats["over_max"],
        "count": stats["count"],
        "max_length": max_length,
        "longest": stats["max"],
        "task": task,
        "suggest": suggest if suggest <= MAX_SUGGESTED_LENGTH else None,
    }


_TRUNCATION_EFFECT = {
    "sft": "a cut reply loses its end and its end-of-turn token, so the model learns replies that never stop",
    "text": "a cut text loses its end and its end-of-text token, so the model learns texts that never end",
    "classification": "the model sees only the start of those texts when it learns their labels",
}


def truncation_message(t: dict[str, Any]) -> str:
    suggest = t["suggest"]
    fix = (
        f"raise dataset.max_length to {suggest} (fits every record; memory grows with it) or "
        if suggest
        else ""
    )
    return (
        f"{t['over']} of {t['count']} records are longer than dataset.max_length ({t['max_length']}) and "
        f"will be truncated (longest: {t['longest']} tokens): {_TRUNCATION_EFFECT[t['task']]}; {fix}remove "
        "the long records from the data"
    )


def model_family(model_config: Any) -> dict[str, Any] | None:
    """The model-family preset a run of this model uses (by name, else by the model_type in its config);
    None if unknown or unreadable. Reads config.json only, never weights: the page asks on a model change."""
    found = model.family(model_config)
    if found is not None:
        return found
    try:
        model_type = getattr(model.load_config(model_config), "model_type", None)
    except Exception:  # noqa: BLE001 - an unreadable model: preflight says why, next to the field
        return None
    return model.family(model_config, model_type)


def _has_token() -> bool:
    return bool(os.environ.get("HF_TOKEN"))


def duration_line(est: dict[str, Any] | None) -> str:
    if not est:
        return (
            "  no speed measured on this machine for this model and these settings yet: a finished run "
            "measures it, or `python -m finetune calibrate CONFIG` (a few real steps)"
        )
    return (
        f"  about {duration.human(est['low'])} to {duration.human(est['high'])}: {est['tokens']:,} tokens at "
        f"{est['tokens_per_second']:,.0f} tokens/s (measured by {est['source']}), start-up included"
    )


def format_report(rep: dict[str, Any]) -> str:
    s: Steps = rep["steps"]
    ds = rep["dataset"]
    lines = ["== Effective configuration (value  <- source)"]
    width = max(len(v.path) for v in rep["effective"])
    lines += [f"  {v.path:<{width}}  {v.value!r}  <- {v.source}" for v in rep["effective"]]
    counted = f"{ds['records']} records ({ds['train']} train, {ds['eval']} eval)"
    if ds.get("streamed"):
        counted = f"a stream of unknown length; what follows comes from its first {ds['records']:,} records"
    lines += ["", "== Dataset", f"  layout {ds['layout']}; {counted}; columns {ds['columns']}"]
    if ds["lengths"]:
        st = ds["lengths"]
        sampled = ""
        if st["count"] < st["records"]:
            sampled = f" (sampled {st['count']:,} of {st['records']:,} records)"
        lines.append(
            f"  tokens per record{sampled}: min {st['min']}, mean {st['mean']:.0f}, p90 {st['p90']:.0f}, "
            f"max {st['max']}; {st['over_max']} over max_length"
        )
    lines += [
        f"  template: {rep['template']}; new tokens: {rep['new_tokens'] or 'none'}",
        "",
        "== Steps",
        *(stream_steps_lines(s) if ds.get("streamed") else steps_lines(s)),
        f"  warmup {s.warmup_steps:,} steps; {s.checkpoints} checkpoints",
    ]
    mem, dev = rep["memory"], rep["device"]
    lines += ["", "== Memory (rough)"]
    if mem:
        where = f"{dev.name} ({dev.memory_gb:.0f} GiB)" if dev.memory_gb else "CPU"
        lines.append(
            f"  {mem['params']:,} parameters, {mem['trainable']:,} trainable; ~{mem['total']:.2f} GiB peak "
            f"(weights {mem['weights']:.2f}, grads+optimizer {mem['gradients_and_optimizer']:.2f}, "
            f"activations {mem['activations']:.2f}, runtime {mem['runtime']:.2f}) on {where}"
        )
    else:
        lines.append("  unavailable for this model")
    lines += ["", "== Duration", duration_line(rep.get("duration"))]
    lines += ["", "== Warnings"] + ([f"  - {w}" for w in rep["warnings"]] or ["  none"])
    return "\n".join(lines)
