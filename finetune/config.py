"""THE config schema: one typed description of a run that the CLI, the page and the training process share.

    python -m finetune plan presets/demo.yaml --training.learning_rate 1e-4

A config is YAML with the sections below. Unknown keys are rejected with their path; each field's
``description`` is its label, its help text, its ``--help`` line and its README row. An optional top-level
``preset`` names a hyperparameter set under ``presets/hparams/`` whose values sit beneath the user's.
``training`` takes ``transformers.TrainingArguments`` / ``trl.SFTConfig`` names: the common ones are typed
here, any other field of those classes is accepted as is, and a field left unset keeps the library default,
which :func:`effective` shows with its source.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from finetune import presets, redact
from finetune.errors import ConfigError, FieldProblem, PresetError, Problem
from finetune.presets import load_yaml


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name_or_path: str = Field(
        "builtin:tiny-llama",
        title="Model",
        description="Local folder or Hub id of the model to tune. "
        "'builtin:tiny-llama' / 'builtin:tiny-gemma' "
        "are tiny models Tuneboard builds locally for demos and tests.",
    )
    revision: str | None = Field(
        None, title="Revision", description="Hub branch, tag or commit to load (Hub ids only)."
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        title="Weights dtype",
        description="Weights dtype when loading: auto = bf16 on a GPU that supports it, else fp32.",
    )
    attn_implementation: str | None = Field(
        None,
        title="Attention kernel",
        description="Attention kernel: eager, sdpa or flash_attention_2. Empty = transformers' choice.",
    )
    liger_kernel: bool | None = Field(
        None,
        title="Liger kernels",
        description="Liger's fused RMSNorm, RoPE and SwiGLU kernels (CUDA, the liger-kernel package). "
        "Unset = on where both are there.",
    )
    trust_remote_code: bool = Field(
        False,
        title="Trust remote code",
        description="Run Python code shipped with the model. Only for models whose authors you trust.",
    )
    family: str | None = Field(
        None,
        title="Family",
        description="Model family preset (presets/models). Empty = detected from the model's config.",
    )


class ColumnMap(Section):
    messages: str | None = Field(
        None, title="messages column", description="Column with a list of chat messages (role/content)."
    )
    prompt: str | None = Field(None, title="prompt column", description="Column with the prompt / user turn.")
    completion: str | None = Field(
        None, title="completion column", description="Column with the completion / assistant turn."
    )
    instruction: str | None = Field(
        None, title="instruction column", description="Alpaca instruction column."
    )
    input: str | None = Field(None, title="input column", description="Alpaca input (context) column.")
    output: str | None = Field(None, title="output column", description="Alpaca output column.")
    text: str | None = Field(
        None, title="text column", description="Column with plain text (task text or classification)."
    )
    label: str | None = Field(
        None, title="label column", description="Column with the class label (classification)."
    )
    system: str | None = Field(
        None, title="system column", description="Column with a per-record system prompt."
    )


Layout = Literal["auto", "messages", "alpaca", "prompt_completion", "text", "classification"]


class DatasetConfig(Section):
    path: str = Field(
        "builtin:sample-chat",
        title="Data path or id",
        description="A CSV/TSV/JSON/JSONL/Parquet file, a Hub dataset id ('org/name'), or "
        "'builtin:NAME' for a sample bundled under presets/data.",
    )
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "txt", "hub"] = Field(
        "auto",
        title="Format",
        description="File format; auto = from the file extension (a non-file is a Hub id).",
    )
    layout: Layout = Field(
        "auto", title="Layout", description="How records are laid out; auto = detected from the columns."
    )
    columns: ColumnMap = Field(default_factory=ColumnMap, description="Which column plays which role.")
    subset: str | None = Field(
        None, title="Subset", description="Hub dataset configuration name, if it has several."
    )
    split: str = Field("train", title="Split", description="Hub dataset split to train on.")
    validation_split: float = Field(
        0.0,
        title="Held out for evaluation",
        ge=0.0,
        lt=1.0,
        description="Fraction of records held out for evaluation (0 = none).",
    )
    max_length: int = Field(
        1024,
        title="max_length (tokens)",
        ge=8,
        description="Longest record in tokens after templating; longer records are truncated.",
    )
    max_records: int | None = Field(
        None,
        title="Use only the first N records",
        ge=1,
        description="Use only the first N records (quick trials); unset = all (0 in the page).",
    )
    streaming: bool = Field(
        False,
        title="Stream the records",
        description="Read records as training needs them instead of loading them all first (a Hub dataset "
        "too big to download, or a folder of Parquet/JSONL shards); statistics come from the first records, "
        "and training.max_steps is required.",
    )


class TemplateConfig(Section):
    name: str = Field(
        "auto",
        title="Template",
        description="Prompt format: a preset id (presets/templates), 'model' = the tokenizer's own chat "
        "template, 'custom' = the Jinja below, 'auto' = the model family's template, else the model's own.",
    )
    custom: str | None = Field(
        None, title="Custom Jinja template", description="Jinja chat template used when name is 'custom'."
    )
    system_prompt: str | None = Field(
        None, title="System prompt", description="System message added to records that have none."
    )
    train_on: Literal["assistant", "all"] = Field(
        "assistant",
        title="Train on",
        description="Which tokens carry loss: only assistant replies, or the whole conversation.",
    )


class TokensConfig(Section):
    add: list[str] = Field(
        title="Tokens to add", default_factory=list, description="New tokens to add to the vocabulary."
    )
    special: bool | dict[str, bool] = Field(
        True,
        title="Special tokens",
        description="Add as special tokens (never split, skipped when decoding with skip_special_tokens): "
        "true/false for all, or a mapping token -> bool.",
    )
    init: Literal["mean_of_pieces", "mean"] = Field(
        "mean_of_pieces",
        title="New rows start as",
        description="New embedding rows start as the mean of the pieces the token used to split into, or the "
        "mean of all rows.",
    )
    pad: Literal["auto", "add", "eos"] = Field(
        "auto",
        title="Pad token",
        description="Pad token: auto = keep the model's own pad if it differs from EOS, else add '<|pad|>'; "
        "eos = reuse EOS (can stop the model from learning to end).",
    )

    @field_validator("add")
    @classmethod
    def _tokens_not_blank(cls, tokens: list[str]) -> list[str]:
        for i, tok in enumerate(tokens):
            if not tok or tok != tok.strip():
                msg = f"token {tok!r} is empty or has surrounding spaces; remove it or trim it"
                raise FieldProblem(f"tokens.add[{i}]", msg)
        dupes = sorted({t for t in tokens if tokens.count(t) > 1})
        if dupes:
            raise FieldProblem("tokens.add", f"tokens listed twice: {', '.join(dupes)}")
        return tokens

    def is_special(self, token: str) -> bool:
        if isinstance(self.special, bool):
            return self.special
        return self.special.get(token, True)


class LoraConfig(Section):
    r: int = Field(
        16,
        title="LoRA rank (r)",
        ge=1,
        le=1024,
        description="LoRA rank: size of the low-rank update (peft `r`).",
    )
    lora_alpha: int = Field(
        32, title="LoRA alpha", ge=1, description="LoRA scaling numerator; the update is scaled by alpha/r."
    )
    lora_dropout: float = Field(
        0.05, title="LoRA dropout", ge=0.0, lt=1.0, description="Dropout on the LoRA branch."
    )
    target_modules: str | list[str] = Field(
        "all-linear",
        title="Target modules",
        description="Modules that get adapters: 'all-linear' or a list of module names.",
    )


Strategy = Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


class LaunchConfig(Section):
    """How many processes train together: `accelerate launch` with a config file from presets/launch/."""

    num_processes: int = Field(
        1,
        title="Processes (GPUs)",
        ge=1,
        description="Training processes in all, one per GPU (on a CPU, processes sharing its cores); 1 = no "
        "launcher.",
    )
    num_machines: int = Field(
        1, title="Machines", ge=1, description="Machines the processes are spread over."
    )
    machine_rank: int = Field(0, title="This machine's rank", ge=0, description="0 on the main machine.")
    main_process_ip: str | None = Field(
        None, title="Main machine address", description="IP address of rank 0, when num_machines > 1."
    )
    main_process_port: int = Field(
        29500, title="Main machine port", ge=1, le=65535, description="Port the processes meet on (rank 0)."
    )
    strategy: Strategy = Field(
        "ddp",
        title="Strategy",
        description="ddp = a full copy of the model per GPU; fsdp / deepspeed_zero2 / deepspeed_zero3 = the "
        "weights, gradients and optimizer state split across GPUs (presets/launch/).",
    )

    @model_validator(mode="after")
    def _machines(self) -> LaunchConfig:
        if self.num_machines > 1 and not self.main_process_ip:
            raise FieldProblem(
                "launch.main_process_ip", "needed when num_machines > 1: the address of rank 0"
            )
        if self.machine_rank >= self.num_machines:
            raise FieldProblem("launch.machine_rank", f"must be below num_machines ({self.num_machines})")
        if self.num_processes < self.num_machines:
            raise FieldProblem("launch.num_processes", "at least one process per machine")
        return self

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1


class GenerationConfig(Section):
    """How the tuned model answers: in the page's Try section and `chat`, and the defaults an export writes
    to generation_config.json. Every answer ends at the template's end-of-turn token."""

    max_new_tokens: int = Field(
        256, title="Max new tokens", ge=1, le=8192, description="The longest answer, in tokens."
    )
    temperature: float = Field(
        0.7,
        title="Temperature",
        ge=0.0,
        le=2.0,
        description="Randomness of each next token: 0 = always the most likely one (greedy), higher = more "
        "varied.",
    )
    top_p: float = Field(
        0.9,
        title="Top-p",
        gt=0.0,
        le=1.0,
        description="Sample only from the most likely tokens whose chances add up to top_p (1 = all tokens).",
    )
    repetition_penalty: float = Field(
        1.1,
        title="Repetition penalty",
        ge=1.0,
        le=2.0,
        description="Above 1, tokens already in the text get less likely (1 = no penalty).",
    )


class AfterConfig(Section):
    """What runs once training has finished (sft and text runs)."""

    stop_check: bool = Field(
        True,
        title="Check that it stops",
        description="After training, answer held-out prompts greedily and record how many answers end with "
        "the end-of-turn token (stops.json).",
    )
    stop_check_prompts: int = Field(
        32,
        title="Prompts for the stop check",
        ge=1,
        le=256,
        description="How many prompts the check answers.",
    )
    stop_check_seconds: float = Field(
        300.0,
        title="Time limit of the stop check",
        ge=5.0,
        description="Seconds the check may take; the answers given by then are recorded.",
    )


# The most tokens a forward/backward pass holds on a CPU where training.micro_batch_tokens is unset
# (finetune/speed.py; measured in bench/RESULTS.md, 2026-12-08).
MICRO_BATCH_TOKENS_CPU = 2048


class TrainingConfig(BaseModel):
    """`TrainingArguments` / `SFTConfig` names, and Tuneboard's own ``micro_batch_tokens``
    (finetune/batching.py). Unset (None) = the library default, shown by `effective`."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    num_train_epochs: float | None = Field(
        None, title="Epochs", gt=0, description="Passes over the training data."
    )
    max_steps: int | None = Field(
        None, title="Max steps", description="Stop after this many optimizer steps; -1 = run the epochs."
    )
    per_device_train_batch_size: int | None = Field(
        None, title="Batch size", ge=1, description="Records per micro-batch per GPU."
    )
    per_device_eval_batch_size: int | None = Field(
        None, title="Eval batch size", ge=1, description="Records per evaluation batch."
    )
    gradient_accumulation_steps: int | None = Field(
        None,
        title="Gradient accumulation",
        ge=1,
        description="Micro-batches summed before each optimizer update (bigger effective batch).",
    )
    micro_batch_tokens: int | None = Field(
        None,
        title="Tokens per pass",
        ge=0,
        description="A batch whose padded tokens exceed this goes through the model in smaller passes, their "
        "gradients summed before the update: the same training, less memory. 0 = whole batches. Unset = "
        f"{MICRO_BATCH_TOKENS_CPU} on a CPU (measured lighter and faster there), whole batches on a GPU.",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        title="Gradient checkpointing",
        description="Recompute activations in the backward pass: less memory, ~30% slower. Unset = on only "
        "when the memory estimate says the run would not fit without it.",
    )
    optim: str | None = Field(
        None, title="Optimizer", description="Optimizer, e.g. adamw_torch_fused, adamw_8bit, sgd."
    )
    learning_rate: float | None = Field(
        None, title="Learning rate", gt=0, le=1, description="Peak learning rate."
    )
    weight_decay: float | None = Field(
        None, title="Weight decay", ge=0, description="Decoupled weight decay (AdamW)."
    )
    lr_scheduler_type: str | None = Field(
        None,
        title="LR schedule",
        description="Learning-rate schedule after warmup: linear, cosine, constant, ...",
    )
    # transformers 5 folded warmup_ratio into warmup_steps (a value below 1 is a ratio): effective.py does so.
    warmup_ratio: float | None = Field(
        None,
        title="Warmup ratio",
        ge=0,
        lt=1,
        description="Fraction of the optimizer steps spent warming the learning rate up from 0.",
    )
    warmup_steps: float | None = Field(
        None, title="Warmup steps", ge=0, description="Warmup length in optimizer steps."
    )
    max_grad_norm: float | None = Field(
        None, title="Max grad norm", ge=0, description="Clip gradients to this norm (0 = no clipping)."
    )
    bf16: bool | None = Field(
        None,
        title="bf16",
        description="bfloat16 mixed precision. Unset = on where the GPU supports it, off on CPU.",
    )
    fp16: bool | None = Field(
        None, title="fp16", description="float16 mixed precision (older GPUs without bf16)."
    )
    tf32: bool | None = Field(None, title="tf32", description="TensorFloat-32 matmuls on Ampere+ GPUs.")
    logging_steps: float | None = Field(
        None, title="Log every N steps", gt=0, description="Log loss every N steps."
    )
    save_strategy: Literal["no", "steps", "epoch", "best"] | None = Field(
        None, title="Save checkpoints", description="When to save checkpoints."
    )
    save_steps: float | None = Field(
        None, title="Save every N steps", gt=0, description="Checkpoint every N steps (save_strategy=steps)."
    )
    save_total_limit: int | None = Field(
        None,
        title="Keep at most N checkpoints",
        ge=1,
        description="Keep at most N checkpoints; unset = keep all (0 in the page).",
    )
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None, title="Evaluate", description="When to evaluate."
    )
    eval_steps: float | None = Field(
        None,
        title="Evaluate every N steps",
        gt=0,
        description="Evaluate every N steps (eval_strategy=steps); unset = library default (0 in the page).",
    )
    push_to_hub: bool | None = Field(
        None, title="Push to Hub", description="Upload the result to the Hub (needs HF_TOKEN)."
    )
    hub_model_id: str | None = Field(None, title="Hub repository", description="Hub repository to push to.")
    report_to: str | list[str] | None = Field(
        None, title="Report to", description="Loggers: tensorboard, wandb, none, ..."
    )
    seed: int | None = Field(
        None, title="Seed", ge=0, description="Random seed for shuffling, dropout and init."
    )
    packing: bool | None = Field(
        None, title="Packing", description="Pack several short records into one sequence (SFT)."
    )
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] | None = (
        Field(
            None,
            title="Batch order",
            description="How records are drawn into batches; group_by_length batches records of similar "
            "length, so less padding. Unset = group_by_length where batches are padded, else random.",
        )
    )
    padding_free: bool | None = Field(
        None,
        title="Padding-free",
        description="Put a batch's records in one row with no padding (SFT). Unset = on with FlashAttention "
        "on a GPU, whose kernel keeps the records apart; else off.",
    )

    @model_validator(mode="after")
    def _known_extra_names(self) -> TrainingConfig:
        allowed = library_fields()
        for name in self.model_extra or {}:
            if name in FORBIDDEN_TRAINING:
                raise FieldProblem(f"training.{name}", f"not accepted: {FORBIDDEN_TRAINING[name]}")
            if name not in allowed:
                close = difflib.get_close_matches(name, sorted(allowed), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise FieldProblem(f"training.{name}", f"not a TrainingArguments/SFTConfig field{hint}")
        return self


def _check_streaming(config: Config) -> None:
    """What a stream cannot give: its length (so no epochs), a held-out share, every label up front."""
    if (config.training.max_steps or 0) <= 0:
        raise FieldProblem(
            "training.max_steps",
            "a streamed dataset has no length, so epochs cannot be counted: set training.max_steps (the "
            "optimizer steps to train; each takes batch size x accumulation records), or turn off "
            "dataset.streaming",
        )
    if config.dataset.validation_split > 0:
        raise FieldProblem(
            "dataset.validation_split",
            "a share of a stream of unknown length cannot be held out: set it to 0, or turn off "
            "dataset.streaming",
        )
    if config.task == "classification":
        raise FieldProblem(
            "dataset.streaming",
            "classification needs every label before training starts: turn off streaming (the labels are "
            "read from the whole file)",
        )
    if config.dataset.max_records:
        raise FieldProblem(
            "dataset.max_records",
            "a stream is cut by training.max_steps: leave dataset.max_records empty (0 in the page)",
        )


# Fields the training process owns (or that would leak secrets into checkpoints).
FORBIDDEN_TRAINING = {
    "output_dir": "the run directory is chosen by Tuneboard (`--run-dir` on the CLI)",
    "logging_dir": "TensorBoard files go to RUN_DIR/tensorboard",
    "hub_token": "set HF_TOKEN in the environment; a token here would be pickled into every checkpoint",
    "max_length": "use dataset.max_length",
    "assistant_only_loss": "use template.train_on",
    "completion_only_loss": "use template.train_on",
    "trust_remote_code": "use model.trust_remote_code",
    "model_init_kwargs": "use the model section",
    "use_liger_kernel": "use model.liger_kernel (Tuneboard applies Liger's layer kernels itself)",
    "liger_kernel_config": "use model.liger_kernel",
}


# The sections a task has no use for: a classification head reads the text as it is (no prompt format) and
# learns no new tokens; plain text needs no prompt format. The page keeps such fields as the user set them
# but leaves them out of the config while that task is chosen; a config file that sets tokens.add for
# classification is refused (_combinations), since it would mean nothing.
UNUSED_BY_TASK: dict[str, tuple[str, ...]] = {
    "sft": (),
    "text": ("template",),
    "classification": (
        "template",
        "tokens.add",
        "tokens.special",
        "tokens.init",
        "training.micro_batch_tokens",
    ),
}


class Config(Section):
    preset: str | None = Field(
        None,
        title="Hyperparameter preset",
        description="Hyperparameter preset id (presets/hparams) used as defaults.",
    )
    task: Literal["sft", "text", "classification"] = Field(
        "sft",
        title="Task",
        description="sft = instruction/chat tuning; text = next-token training on plain text; "
        "classification = text -> label.",
    )
    method: Literal["full", "lora", "qlora"] = Field(
        "lora",
        title="Method",
        description="full = train every weight; lora = small adapters; qlora = LoRA on a 4-bit model (GPU).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    template: TemplateConfig = Field(default_factory=TemplateConfig)
    tokens: TokensConfig = Field(default_factory=TokensConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    after: AfterConfig = Field(default_factory=AfterConfig)
    # Where each value came from: dotted path -> "user" or "preset:<id>" (everything else is a default).
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _combinations(self) -> Config:
        if self.tokens.add and self.method != "full" and (self.training.weight_decay or 0) > 0:
            raise FieldProblem(
                "training.weight_decay",
                "above 0 with tokens.add under LoRA would shrink the frozen embedding rows; "
                "set training.weight_decay: 0 or use method: full",
            )
        if self.task == "classification" and self.tokens.add:
            problem = "new tokens are for generative tasks (sft, text); remove them for classification"
            raise FieldProblem("tokens.add", problem)
        if self.task == "classification" and self.training.micro_batch_tokens:
            problem = "splits the batches of generative tasks (sft, text); set 0 or leave it unset"
            raise FieldProblem("training.micro_batch_tokens", problem)
        if self.dataset.streaming:
            _check_streaming(self)
        if self.training.micro_batch_tokens and self.launch.strategy.startswith("deepspeed"):
            problem = "DeepSpeed steps the optimizer at every backward pass; set 0 or leave it unset"
            raise FieldProblem("training.micro_batch_tokens", problem)
        return self

    def source(self, path: str) -> str:
        return self._sources.get(path, "default")

    def to_yaml(self) -> str:
        """The config as the user gave it (preset values stay referenced by ``preset:``, not copied)."""
        return dump_yaml(self.user_dict())

    def user_dict(self) -> dict[str, Any]:
        """The values the user set (a preset's stay behind its ``preset:`` reference)."""
        return self._set_values(lambda src: src == "user")

    def merged_dict(self) -> dict[str, Any]:
        """The values the user or the preset set: what a run directory stores (finetune/rundir.py)."""
        return self._set_values(lambda src: src == "user" or src.startswith("preset:"))

    def _set_values(self, chosen: Any) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for path, src in self._sources.items():
            if chosen(src):
                try:
                    set_path(out, path, get_path(data, path))
                except KeyError:  # extra training.* names live in model_extra, dumped alongside
                    pass
        return out


@functools.cache
def library_defaults() -> dict[str, Any]:
    """Every field `trl.SFTConfig` accepts (a superset of `TrainingArguments`) and its default: what an unset
    ``training.*`` value becomes (for task sft; effective.py says where Tuneboard or the task differ).

    Importing trl takes seconds, and every config check needs these names: they are kept in the cache folder,
    keyed by the trl and transformers versions that define them, so only the first start pays.
    """
    cached = _library_cache()
    try:
        return json.loads(cached.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    out = _read_library_defaults()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_text(json.dumps(out), encoding="utf-8")
        os.replace(tmp, cached)  # whole or not at all: another process may be reading it
    except (OSError, TypeError, ValueError):
        pass  # a read-only cache: read trl again next time
    return out


def _library_cache() -> Path:
    from importlib.metadata import version

    from finetune.builtin import cache_root

    return cache_root() / f"sft-config-trl{version('trl')}-transformers{version('transformers')}.json"


def _read_library_defaults() -> dict[str, Any]:
    """:func:`_library_defaults_here`, in a child process unless TRL is imported already: the dashboard checks
    configs, and TRL (with torch) would stay in its memory for good (~300 MB) for one read."""
    if "trl" in sys.modules:
        return _library_defaults_here()
    code = "import json; from finetune import config; print(json.dumps(config._library_defaults_here()))"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading trl.SFTConfig's fields failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _library_defaults_here() -> dict[str, Any]:
    from trl import SFTConfig  # heavy: imported when a config is first checked, not when this module is

    out: dict[str, Any] = {}
    for f in dataclasses.fields(SFTConfig):
        if f.init:
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = getattr(default, "value", default)
    out["warmup_ratio"] = out.get("warmup_ratio") or 0.0  # transformers 5 folded it into warmup_steps
    return json.loads(json.dumps(out, default=str))  # the same values whether read from trl or the cache


def library_fields() -> set[str]:
    """Every field name `trl.SFTConfig` accepts."""
    return set(library_defaults())


# ---------------------------------------------------------------- loading and merging


def load(path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Read a YAML config, lay its preset beneath it and the overrides on top, and validate."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([("", f"config file {path} does not exist")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{path} is not valid YAML: {exc}")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("", f"{path} must hold a mapping of sections (model:, dataset:, ...)")])
    return from_dict(raw, overrides)


def from_dict(raw: dict[str, Any], overrides: list[str] | dict[str, Any] | None = None) -> Config:
    user = copy.deepcopy(raw)
    items = parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {})
    for dotted, value in items.items():
        set_path(user, dotted, value)
    _refuse_tokens(user)
    preset_id = user.get("preset")
    preset = preset_values(preset_id)
    config = validate(deep_merge(preset, user))
    config._sources = {p: f"preset:{preset_id}" for p in flatten(preset)} | {p: "user" for p in flatten(user)}
    return config


def _refuse_tokens(user: dict[str, Any]) -> None:
    """A config is copied into every run directory and shown in the page: no Hugging Face token in it."""
    found = [path for path, value in flatten(user).items() if redact.looks_like_token(str(value))]
    if found:
        why = "looks like a Hugging Face token: put it in the HF_TOKEN environment variable, not a config"
        raise ConfigError([(path, why) for path in found])


def validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(err) for err in exc.errors()]) from None


def _problem(err: Any) -> Problem:
    """One pydantic error as a Problem: the exact field, the engine's wording, and pydantic's type and
    context (plain values) so the page can say it in the reader's language."""
    path, message = _wording(err)
    ctx = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in (err.get("ctx") or {}).items()}
    return Problem(path, message, err["type"], ctx or None)


def _wording(err: Any) -> tuple[str, str]:
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        return cause.field, str(cause)
    path = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check the spelling"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return path, msg


def preset_values(preset_id: str | None) -> dict[str, Any]:
    if not preset_id:
        return {}
    try:
        data = presets.load("hparams", preset_id)
    except PresetError as exc:
        raise ConfigError([("preset", str(exc))]) from None
    return data.get("values", {})


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``['--training.learning_rate', '1e-4', '--dataset.path=x.csv']`` -> {dotted: typed value}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError([("", f"expected --section.key VALUE, got {arg!r}")])
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise ConfigError([(key, "missing value after the flag")])
            value, i = args[i + 1], i + 1
        out[key] = _override_value(value)
        i += 1
    return out


def generation_settings(base: GenerationConfig, overrides: list[str] | dict[str, Any]) -> GenerationConfig:
    """``base`` with ``--generation.key VALUE`` overrides, validated like a config (the problems name
    ``generation.<key>``); any other section is refused: a chat changes how the model answers, no more."""
    items = parse_overrides(overrides) if isinstance(overrides, list) else overrides
    other = [key for key in items if not key.startswith("generation.")]
    if other:
        raise ConfigError([(key, "only generation.* settings apply to an answer") for key in other])
    values = base.model_dump() | {key.split(".", 1)[1]: value for key, value in items.items()}
    try:
        return GenerationConfig.model_validate(values)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        raise ConfigError(
            [Problem(f"generation.{p.path}", p.message, p.kind, p.ctx) for p in problems]
        ) from None


def _override_value(text: str) -> Any:
    """A flag's value typed as YAML; text that is not valid YAML (a Jinja template, say) stays a string."""
    if text == "":
        return None
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError([(dotted, f"{part} is not a section")])
    node[parts[-1]] = value


def get_path(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def field_info(path: str) -> Any:
    """The pydantic FieldInfo of a dotted schema path ('training.learning_rate'); KeyError if none."""
    model: Any = Config
    *sections, name = path.split(".")
    for part in sections:
        model = model.model_fields[part].annotation
    return model.model_fields[name]


def choices(path: str) -> tuple[Any, ...] | None:
    """The values a field takes when its type is a ``Literal`` (None left out), else None."""
    try:
        ann = field_info(path).annotation
    except KeyError:
        return None
    for arm in (ann, *typing.get_args(ann)):  # Literal[...] or Literal[...] | None
        if typing.get_origin(arm) is Literal:
            return typing.get_args(arm)
    return None


def bounds(path: str) -> tuple[float | None, float | None]:
    """(lowest, highest) a number field accepts, from its ``ge``/``gt`` and ``le``/``lt`` (None: no bound)."""
    low = high = None
    for rule in field_info(path).metadata:
        low = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else low
        low = getattr(rule, "gt", None) if getattr(rule, "gt", None) is not None else low
        high = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else high
        high = getattr(rule, "lt", None) if getattr(rule, "lt", None) is not None else high
    return low, high


def describe_fields() -> list[tuple[str, str, Any]]:
    """(path, description, default) for every schema field: the source of --help text and the README table."""
    rows: list[tuple[str, str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                default = None if info.default_factory else info.default
                rows.append((f"{prefix}{name}", info.description or "", default))

    walk(Config, "")
    return rows
