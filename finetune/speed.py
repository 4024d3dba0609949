"""What makes a run fast: the values Tuneboard chooses where a config leaves them unset, each with its reason.

    python -m finetune plan presets/demo.yaml     # each shows among the effective values as "tuneboard: ..."

Each choice is safe where it is made and yields to the config: set the field to keep the library's way
(``training.train_sampling_strategy: random``, ``training.gradient_checkpointing: true``,
``training.micro_batch_tokens: 0``, ``training.padding_free: false``, ``model.attn_implementation: sdpa``,
``model.liger_kernel: false``).

- Records of similar length share a batch (transformers' ``group_by_length`` sampler): a batch is padded
  to its longest record, so mixing short and long records wastes most of the compute on padding.
- On a CPU, a batch goes through the model in passes of at most 2,048 tokens, gradients summed: the same
  update, holding one pass's activations instead of the batch's (measured no slower there; a GPU keeps
  whole batches, which it computes best).
- Activation checkpointing (TRL's SFTConfig turns it on by default, ~30% slower) only when the memory
  estimate without it would not fit the device (finetune/memory.py).
- On a CUDA GPU with FlashAttention installed: its kernel, and padding-free batches (every record of a
  batch in one row, kept apart by position_ids through the variable-length kernel). Without such a kernel,
  records in one row would attend to each other, so padding-free stays off; on a CPU, longer rows were
  measured slower than padded ones anyway, since attention cost grows with row length.
- On a CUDA GPU with liger-kernel installed: Liger's fused RMSNorm, RoPE and SwiGLU kernels, patched into
  the model by the training process (``model.liger_kernel: false`` keeps the model's own layers).
- Already the library's defaults, so shown as such: fused AdamW (``adamw_torch_fused``, torch >= 2.8),
  bf16 / tf32 where the GPU has them (finetune/effective.py).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from finetune import memory
from finetune.config import MICRO_BATCH_TOKENS_CPU
from finetune.errors import ModelError

FLASH = "flash_attention_2"
ESTIMATE_MARGIN = 1.25  # the memory estimate can be this much too low (bench/RESULTS.md: within 25%)


@dataclass(frozen=True)
class Choice:
    value: Any
    why: str


def sampling(config: Any, batch_size: int, padding_free: bool) -> Choice | None:
    """Length-grouped batches, where a batch is padded (more than one record, no packing)."""
    if config.training.packing or padding_free or batch_size < 2 or config.dataset.streaming:
        return None  # a stream is read in its stored order: there is nothing to group
    why = "records of similar length share a batch, so batches carry less padding (batches shuffled)"
    return Choice("group_by_length", why)


def micro_batches(config: Any, device: Any) -> Choice | None:
    """Batches split into passes of at most MICRO_BATCH_TOKENS_CPU tokens on a CPU (finetune/batching.py)."""
    if config.training.micro_batch_tokens is not None or config.task == "classification":
        return None
    if device.kind == "cuda":
        return None  # a GPU is busiest with the whole batch in one pass; not measured otherwise
    why = (
        "a CPU trains as fast on passes of this many tokens and holds the activations of one pass only "
        "(bench/RESULTS.md): the same update, less memory"
    )
    return Choice(MICRO_BATCH_TOKENS_CPU, why)


def micro_batch_tokens(config: Any, device: Any) -> int:
    """The most tokens one forward/backward pass holds: the config's word, else :func:`micro_batches`'s;
    0 = the whole batch in one pass."""
    if config.training.micro_batch_tokens is not None:
        return config.training.micro_batch_tokens
    chosen = micro_batches(config, device)
    return chosen.value if chosen else 0


def checkpointing(config: Any, device: Any, batch_size: int) -> Choice | None:
    """Activation checkpointing from the memory estimate: on only when the run would not fit without it."""
    without = memory.estimate(
        config,
        device,
        batch_size=batch_size,
        checkpointing=False,
        micro_batch_tokens=micro_batch_tokens(config, device),
    )
    if without is None:
        return None
    room = memory.available_gb(device)
    where = "the GPU's" if device.kind == "cuda" else "the machine's"
    need = without["total"] * ESTIMATE_MARGIN
    estimate = f"the memory estimate without it (~{need:.1f} GiB with a 25% margin)"
    if need <= room:
        return Choice(False, f"{estimate} fits {where} {room:.0f} GiB: recomputing would only cost time")
    return Choice(True, f"{estimate} exceeds {where} {room:.0f} GiB")


def attention(config: Any, device: Any) -> Choice | None:
    """FlashAttention on a CUDA GPU where it is installed and the weights are half precision."""
    dtype = memory.weights_dtype(config, device)
    if config.model.attn_implementation or device.kind != "cuda" or dtype not in ("bf16", "fp16"):
        return None
    if not installed("flash_attn"):
        return None
    return Choice(FLASH, "flash-attn is installed and the GPU trains in half precision")


# Liger's layer kernels only: TRL 1.16's SFTTrainer puts its own fused LM head on the model (the loss without
# the full logits) and refuses Liger's fused linear cross-entropy, which would replace the same forward.
LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}
LIGER_OFF = {"fused_linear_cross_entropy": False}


def liger(config: Any, device: Any) -> Choice | None:
    """Liger's fused RMSNorm, RoPE and SwiGLU kernels on a CUDA GPU where liger-kernel is installed. TRL
    deprecates its ``use_liger_kernel`` (its replacement downloads kernels from the Hub at run time), so the
    training process applies Liger's patch itself (:func:`apply_liger`)."""
    if config.model.liger_kernel is not None or device.kind != "cuda" or not installed("liger_kernel"):
        return None
    return Choice(
        True, "liger-kernel is installed and the run is on a CUDA GPU (fused RMSNorm, RoPE, SwiGLU)"
    )


def liger_on(config: Any, device: Any) -> bool:
    """Whether the run uses Liger's kernels: the config's word, else :func:`liger`'s."""
    if config.model.liger_kernel is not None:
        return config.model.liger_kernel
    return liger(config, device) is not None


def check_liger(device: Any) -> None:
    """``model.liger_kernel: true`` where it cannot run: refused before a run directory exists."""
    if device.kind != "cuda":
        why = "true needs a CUDA GPU (Liger's kernels are Triton GPU kernels); set false or leave it unset"
        raise ModelError("model.liger_kernel", why)
    if not installed("liger_kernel"):
        why = "true needs the liger-kernel package: pip install liger-kernel (or leave it unset)"
        raise ModelError("model.liger_kernel", why)


def apply_liger(net: Any) -> str:
    """Patch ``net``'s layers in place with Liger's kernels (before LoRA wraps it); says what it did."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    from transformers.integrations.liger import apply_liger_kernel

    model_type = getattr(net.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"Liger kernels: none for model type {model_type!r}; the model's own layers are used"
    apply_liger_kernel(net, LIGER_KERNELS | LIGER_OFF)
    return f"Liger kernels applied ({model_type}): " + ", ".join(k for k, on in LIGER_KERNELS.items() if on)


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def padding_free(config: Any, attn: str | None) -> Choice | None:
    """No padding at all, where the attention kernel keeps the records of one row apart."""
    if config.task == "classification" or config.training.packing or attn != FLASH:
        return None
    return Choice(True, f"{FLASH} keeps the records of a row apart (variable-length kernel)")


def attn_implementation(config: Any, device: Any) -> str | None:
    """The attention kernel the model loads with: the config's, else :func:`attention`'s, else None (sdpa,
    transformers' own default)."""
    chosen = attention(config, device)
    return config.model.attn_implementation or (chosen.value if chosen else None)
