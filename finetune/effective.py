"""Every value a run will use, library defaults included, each with where it came from.

    python -m finetune plan presets/demo.yaml        # prints this table among the rest

The training process builds its ``SFTConfig`` / ``TrainingArguments`` with :func:`training_args`, and
:func:`effective` reads every field back from that same object, so what the page and ``plan`` show is exactly
what the trainer gets. Sources: ``user``, ``preset:<id>``, ``tuneboard`` (a value Tuneboard derives, with
why),
``default`` (our schema's default) and ``library`` (trl/transformers' own default).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finetune import speed
from finetune.config import Config, ConfigError, flatten, set_path
from finetune.model import Device

RUN_DIR_PLACEHOLDER = "RUN_DIR"
# training.* fields that are Tuneboard's own, not the trainer's arguments (finetune/batching.py reads it).
OWN_TRAINING = {"micro_batch_tokens"}


@dataclass(frozen=True)
class Value:
    path: str
    value: Any
    source: str


def args_class(config: Config) -> type:
    if config.task == "classification":
        from transformers import TrainingArguments

        return TrainingArguments
    from trl import SFTConfig

    return SFTConfig


def device_of(cuda: bool, bf16_ok: bool, memory_gb: float | None) -> Device:
    """The device the values are for: a CUDA GPU (bf16 or not, with its memory) or the CPU."""
    return Device("cuda", "GPU", bf16_ok, memory_gb) if cuda else Device("cpu", "CPU", False, None)


def training_kwargs(
    config: Config, *, cuda: bool, bf16_ok: bool, has_eval: bool, memory_gb: float | None = None
) -> dict[str, Value]:
    """The keyword arguments for the args class, each with its source. ``memory_gb``: the GPU's memory
    (the speed choices size activation checkpointing by it; the machine's RAM on a CPU)."""
    kw: dict[str, Value] = {}
    given = config.training.model_dump(exclude_none=True, exclude=OWN_TRAINING)
    for name, value in given.items():
        kw[name] = Value(f"training.{name}", value, config.source(f"training.{name}"))

    def derive(name: str, value: Any, why: str) -> None:
        kw[name] = Value(f"training.{name}", value, f"tuneboard: {why}")

    _precision(config, kw, derive, cuda=cuda, bf16_ok=bf16_ok)
    _speed(config, kw, derive, device_of(cuda, bf16_ok, memory_gb))
    _checkpointing_names(config, kw)
    if "warmup_ratio" in kw:
        ratio = kw.pop("warmup_ratio")
        if "warmup_steps" not in kw:  # transformers 5 reads a warmup_steps below 1 as a ratio
            kw["warmup_steps"] = Value("training.warmup_steps", ratio.value, f"{ratio.source} (warmup_ratio)")
    if "report_to" not in kw:
        derive("report_to", ["tensorboard"], "TensorBoard event files in RUN_DIR/tensorboard")
    if not cuda:
        derive("use_cpu", True, "no GPU found")
    if "disable_tqdm" not in kw:
        derive("disable_tqdm", True, "progress goes to train.log as one line per logging step")
    if "logging_nan_inf_filter" not in kw:
        # transformers 5.24 logs the mean of the earlier steps in place of a NaN/inf loss (0.0 when every
        # step is NaN), so the run would "finish" with a broken model instead of stopping with a reason.
        derive("logging_nan_inf_filter", False, "a NaN/inf loss is logged as is and stops the run")
    if has_eval and "eval_strategy" not in kw:
        derive("eval_strategy", "epoch", "dataset.validation_split > 0")
    _task_kwargs(config, derive)
    return kw


def _task_kwargs(config: Config, derive: Callable[[str, Any, str], None]) -> None:
    """What TRL's SFTConfig needs for the task (classification trains with TrainingArguments: none)."""
    if config.task == "classification":
        return
    derive("max_length", config.dataset.max_length, "dataset.max_length")
    if config.task == "sft":
        # TRL gets the records tokenized, each with its loss mask (train.tokenized), never the messages: the
        # mask is template.train_on's and TRL's own option only applies to conversational records.
        derive(
            "assistant_only_loss",
            False,
            f"template.train_on: {config.template.train_on} is applied as the records' assistant_masks",
        )
    else:
        derive("dataset_text_field", "text", "task text trains on the text column")


def _precision(config: Config, kw: dict[str, Value], derive, *, cuda: bool, bf16_ok: bool) -> None:
    bf16, fp16 = config.training.bf16, config.training.fp16
    problems = []
    if bf16 and not bf16_ok:
        problems.append(
            ("training.bf16", "true needs a GPU with bfloat16 support; set it to false (or leave it unset)")
        )
    if fp16 and not cuda:
        problems.append(("training.fp16", "true needs a CUDA GPU; set it to false on CPU"))
    if bf16 and fp16:
        problems.append(("training.fp16", "bf16 and fp16 are both on; keep one"))
    if problems:
        raise ConfigError(problems)
    if bf16 is None:
        on = bf16_ok and not fp16
        derive("bf16", on, "auto: the GPU supports bf16" if on else "auto: no bf16 on this device")
    if config.training.tf32 is None and cuda:
        derive("tf32", bf16_ok, "auto: on for Ampere and newer GPUs")


def _speed(config: Config, kw: dict[str, Value], derive, device: Device) -> None:
    """finetune/speed.py's choices for what the config leaves unset."""
    batch = kw["per_device_train_batch_size"].value if "per_device_train_batch_size" in kw else None
    batch = batch or _field_default(args_class(config), "per_device_train_batch_size") or 1
    if config.task != "classification" and "padding_free" not in kw:
        free = speed.padding_free(config, speed.attn_implementation(config, device))
        if free:
            derive("padding_free", free.value, free.why)
    padding_free = bool(kw["padding_free"].value) if "padding_free" in kw else False
    sampling = speed.sampling(config, batch, padding_free)
    if sampling and "train_sampling_strategy" not in kw:
        derive("train_sampling_strategy", sampling.value, sampling.why)
    if not any(name in kw for name in (*RENAMED, *RENAMED.values())):
        checkpointing = speed.checkpointing(config, device, batch)
        if checkpointing:
            derive("activation_checkpointing", checkpointing.value, checkpointing.why)


# transformers 5 renamed these and warns on the old names (TRL 1.16's SFTConfig sets the old one by default),
# so the library always gets the new name; configs keep the seed's name, training.gradient_checkpointing.
RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _checkpointing_names(config: Config, kw: dict[str, Value]) -> None:
    for old, new in RENAMED.items():
        if old in kw and new in kw:
            problem = f"training.{new} is set too; keep one (they are the same setting)"
            raise ConfigError([(f"training.{old}", problem)])
        if old in kw:
            given = kw.pop(old)
            kw[new] = Value(f"training.{new}", given.value, f"{given.source} (as training.{old})")
        elif new not in kw:
            default = _field_default(args_class(config), old)
            if default is not None:
                source = f"library: {args_class(config).__name__} default (its {old})"
                kw[new] = Value(f"training.{new}", default, source)


def _field_default(cls: type, name: str) -> Any:
    found = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    return None if found is None or found.default is dataclasses.MISSING else found.default


def training_args(
    config: Config,
    run_dir: str,
    *,
    cuda: bool,
    bf16_ok: bool,
    has_eval: bool,
    memory_gb: float | None = None,
) -> Any:
    kw = training_kwargs(config, cuda=cuda, bf16_ok=bf16_ok, has_eval=has_eval, memory_gb=memory_gb)
    values = {name: v.value for name, v in kw.items()}
    try:
        return args_class(config)(output_dir=run_dir, **values)
    except (ValueError, TypeError) as exc:
        raise ConfigError([("training", str(exc).splitlines()[0])]) from None


def effective(
    config: Config,
    *,
    cuda: bool = False,
    bf16_ok: bool = False,
    has_eval: bool | None = None,
    memory_gb: float | None = None,
) -> list[Value]:
    """Every value the run uses: our schema's sections, then every field of the trainer arguments."""
    if has_eval is None:
        has_eval = config.dataset.validation_split > 0
    device = dict(cuda=cuda, bf16_ok=bf16_ok, has_eval=has_eval, memory_gb=memory_gb)
    rows = _section_rows(config, device_of(cuda, bf16_ok, memory_gb))
    kw = training_kwargs(config, **device)
    args = training_args(config, RUN_DIR_PLACEHOLDER, **device)
    library = args_class(config).__name__
    for f in dataclasses.fields(args):
        if not f.init or f.name in {"hub_token"}:
            continue
        value = _plain(getattr(args, f.name))
        source = kw[f.name].source if f.name in kw else f"library: {library} default"
        if f.name in RENAMED:  # the library mirrors the new name into the old one
            source = f"the same as training.{RENAMED[f.name]}"
        if f.name == "output_dir":
            source = "tuneboard: the run directory"
        rows.append(Value(f"training.{f.name}", value, source))
    return rows


def _section_rows(config: Config, device: Device) -> list[Value]:
    """The schema's own sections (model, dataset, ...) and its own training fields, with the choices
    finetune/speed.py makes for them."""
    rows = []
    chosen = {
        "model.attn_implementation": speed.attention(config, device),
        "model.liger_kernel": speed.liger(config, device),
        "training.micro_batch_tokens": speed.micro_batches(config, device),
    }
    own = {"training": {name: getattr(config.training, name) for name in OWN_TRAINING}}
    for path, value in flatten(config.model_dump(mode="json", exclude={"training"}) | own).items():
        if choice := chosen.get(path):
            rows.append(Value(path, choice.value, f"tuneboard: {choice.why}"))
        else:
            rows.append(Value(path, value, config.source(path)))
    return rows


def _plain(value: Any) -> Any:
    """Enums and other objects as YAML-friendly scalars."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def as_yaml_dict(rows: list[Value]) -> dict[str, Any]:
    """Nested dict of the effective values (the run directory's effective_config.yaml)."""

    out: dict[str, Any] = {}
    for row in rows:
        set_path(out, row.path, row.value)
    return out
