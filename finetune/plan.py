"""What a run will do, before it runs: step arithmetic, a rough memory estimate, warnings.

    python -m finetune plan presets/demo.yaml --training.num_train_epochs 3

The arithmetic follows transformers' Trainer: an epoch is ceil(records / (batch x devices)) micro-batches;
the optimizer updates once per ``gradient_accumulation_steps`` micro-batches. 10,000 records at batch 2 for
3 epochs is 15,000 micro-batches; with gradient_accumulation_steps 2 that is 7,500 optimizer updates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


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
    micro_per_epoch = max(math.ceil(records / (batch_size * devices)), 1) if records else 0
    updates_per_epoch = max(math.ceil(micro_per_epoch / grad_accum), 1) if micro_per_epoch else 0
    if max_steps > 0:
        total = max_steps
        micro = max_steps * grad_accum
    else:
        total = math.ceil(epochs * updates_per_epoch)
        micro = math.ceil(epochs * micro_per_epoch)
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
    )


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
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "4bit": 0.55}  # 4-bit: nf4 weights plus quantization constants


def memory_gb(
    params: int,
    *,
    trainable: int,
    weight_dtype: str,
    batch_size: int,
    seq_len: int,
    hidden: int,
    layers: int,
    checkpointing: bool,
) -> dict[str, float]:
    """A rough peak-memory estimate in GiB; real use varies +-30% with kernels and fragmentation.

    weights at their dtype; gradients + AdamW's two moments in fp32 for the trainable parameters; activations
    ~ batch x seq x hidden x layers x (2 bytes x 2 with checkpointing, x 16 without).
    """
    weights = params * BYTES[weight_dtype]
    optimizer = trainable * (4 + 8)
    per_layer = 4 if checkpointing else 32
    activations = batch_size * seq_len * hidden * layers * per_layer
    total = weights + optimizer + activations
    gib = 2**30
    return {
        "weights": weights / gib,
        "gradients_and_optimizer": optimizer / gib,
        "activations": activations / gib,
        "total": total / gib,
    }


def report(config: Any, checked: Any = None) -> dict[str, Any]:
    """Everything ``plan`` prints, as data: effective values, dataset summary, steps, memory, warnings.

    ``checked``: preflight.run's answer for ``config`` when the caller has it already (the page caches it).
    """
    from finetune import data, effective, model, preflight

    checked = checked or preflight.run(config, sample=SAMPLE)
    device = model.detect_device()
    has_eval = checked.dataset.n_eval > 0
    cuda = device.kind == "cuda"
    args = effective.training_args(
        config, effective.RUN_DIR_PLACEHOLDER, cuda=cuda, bf16_ok=device.bf16, has_eval=has_eval
    )
    lengths = preflight.record_lengths(checked)
    stats = data.length_stats(lengths, config.dataset.max_length) if lengths else {}
    warnings = list(checked.warnings)
    if stats.get("over_max"):
        warnings.append(
            f"{stats['over_max']} of {stats['count']} records are longer than dataset.max_length "
            f"({config.dataset.max_length}) and will be truncated (longest: {stats['max']} tokens)"
        )
    if config.training.push_to_hub and not _has_token():
        warnings.append("training.push_to_hub is on but HF_TOKEN is not set in the environment")
    return {
        "effective": effective.effective(config, cuda=cuda, bf16_ok=device.bf16, has_eval=has_eval),
        "device": device,
        "dataset": {
            "layout": checked.dataset.layout,
            "records": checked.dataset.n_records,
            "train": checked.dataset.n_train,
            "eval": checked.dataset.n_eval,
            "columns": {k: v for k, v in checked.dataset.columns.model_dump().items() if v},
            "lengths": stats,
        },
        "template": checked.template.id if checked.template else None,
        "new_tokens": [checked.tokenizer.convert_ids_to_tokens(i) for i in checked.token_changes.new_ids],
        "steps": steps_from_args(checked.dataset.n_train, args),
        "memory": _memory(config, device, args, checked),
        "warnings": warnings,
    }


def _has_token() -> bool:
    import os

    return bool(os.environ.get("HF_TOKEN"))


def _memory(config: Any, device: Any, args: Any, checked: Any) -> dict[str, float] | None:
    """Count parameters on the meta device (no weights loaded) and estimate peak memory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from finetune import model

    try:
        cfg = model.load_config(config.model)
        auto = AutoModelForSequenceClassification if config.task == "classification" else AutoModelForCausalLM
        with torch.device("meta"):
            net = auto.from_config(cfg, trust_remote_code=config.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - an estimate is optional; never fail plan over it
        return None
    params = sum(p.numel() for p in net.parameters())
    trainable = params if config.method == "full" else _lora_params(net, config.lora.r)
    dtype = (
        "4bit" if config.method == "qlora" else str(model.torch_dtype(config.model, device)).split(".")[-1]
    )
    dtype = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return memory_gb(
        params,
        trainable=trainable,
        weight_dtype=dtype,
        batch_size=args.per_device_train_batch_size,
        seq_len=config.dataset.max_length,
        hidden=getattr(text, "hidden_size", 0),
        layers=getattr(text, "num_hidden_layers", 0),
        checkpointing=bool(args.gradient_checkpointing),
    ) | {"params": params, "trainable": trainable}


def _lora_params(net: Any, r: int) -> int:
    import torch

    head = net.get_output_embeddings()
    return sum(
        r * (m.in_features + m.out_features)
        for m in net.modules()
        if isinstance(m, torch.nn.Linear) and m is not head
    )


def format_report(rep: dict[str, Any]) -> str:
    s: Steps = rep["steps"]
    ds = rep["dataset"]
    lines = ["== Effective configuration (value  <- source)"]
    width = max(len(v.path) for v in rep["effective"])
    lines += [f"  {v.path:<{width}}  {v.value!r}  <- {v.source}" for v in rep["effective"]]
    lines += [
        "",
        "== Dataset",
        f"  layout {ds['layout']}; {ds['records']} records ({ds['train']} train, {ds['eval']} eval); "
        f"columns {ds['columns']}",
    ]
    if ds["lengths"]:
        st = ds["lengths"]
        lines.append(
            f"  tokens per record: min {st['min']}, mean {st['mean']:.0f}, p90 {st['p90']:.0f}, "
            f"max {st['max']}; "
            f"{st['over_max']} over max_length"
        )
    lines += [
        f"  template: {rep['template']}; new tokens: {rep['new_tokens'] or 'none'}",
        "",
        "== Steps",
        f"  {s.records:,} records / (batch {s.batch_size} x {s.devices} device) = "
        f"{s.micro_batches_per_epoch:,} micro-batches per epoch",
        f"  x {s.epochs:g} epochs = {s.micro_batches:,} micro-batches"
        + (f" (max_steps {s.max_steps})" if s.max_steps > 0 else ""),
        f"  gradient_accumulation_steps {s.grad_accum}: effective batch {s.effective_batch}, "
        f"{s.optimizer_steps:,} optimizer steps ({s.updates_per_epoch:,} per epoch)",
        f"  warmup {s.warmup_steps:,} steps; {s.checkpoints} checkpoints",
    ]
    mem, dev = rep["memory"], rep["device"]
    lines += ["", "== Memory (rough)"]
    if mem:
        where = f"{dev.name} ({dev.memory_gb:.0f} GiB)" if dev.memory_gb else "CPU"
        lines.append(
            f"  {mem['params']:,} parameters, {mem['trainable']:,} trainable; ~{mem['total']:.2f} GiB peak "
            f"(weights {mem['weights']:.2f}, grads+optimizer {mem['gradients_and_optimizer']:.2f}, "
            f"activations {mem['activations']:.2f}) on {where}"
        )
    else:
        lines.append("  unavailable for this model")
    lines += ["", "== Warnings"] + ([f"  - {w}" for w in rep["warnings"]] or ["  none"])
    return "\n".join(lines)
