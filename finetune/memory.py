"""A rough peak-memory estimate of a run, from the model's config alone (no weights are loaded).

    python -m finetune plan presets/demo.yaml      # "== Memory (rough)"

The parameters are counted on the meta device; the rest is arithmetic (:func:`memory_gb`). ``plan`` and the
Hyperparameters section show it, and finetune/speed.py turns activation checkpointing on only when the
estimate without it would not fit the device.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from finetune import model
from finetune.config import ModelConfig

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "4bit": 0.55}  # 4-bit: nf4 weights plus quantization constants
HEADROOM = 0.9  # the share of a device's memory a run may plan for (CUDA context, fragmentation)
# What the training process holds besides the model's tensors. CPU: Python, torch, transformers, TRL, the
# data and the allocator's slack (bench/run.py: 0.83-0.86 GiB at the first step of its CPU runs, whose
# weights are 20 MB); CUDA: the context and cuBLAS's workspaces, which max_memory_allocated does not count.
RUNTIME_GB = {"cpu": 0.8, "cuda": 0.5}


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: parameter counts and the sizes of one decoder layer."""

    params: int
    trainable: int
    hidden: int
    layers: int
    kv_dim: int = 0  # key/value width (heads x head size; smaller than hidden with grouped-query attention)
    intermediate: int = 0  # the MLP's inner width


def layer_elements(shape: Shape) -> int:
    """Activation elements a Llama-style decoder layer keeps per token for the backward pass: the two
    RMSNorms (~3 x hidden each), the attention's input, q and k before and after RoPE, k and v repeated for
    grouped-query attention, its output and o_proj's input (~8 x hidden + 2 x kv), and the gated MLP's gate,
    up, activation and product (4 x intermediate)."""
    return 14 * shape.hidden + 2 * shape.kv_dim + 4 * (shape.intermediate or 4 * shape.hidden)


def memory_gb(
    shape: Shape, *, weight_dtype: str, batch_size: int, seq_len: int, checkpointing: bool, device_kind: str
) -> dict[str, float]:
    """A rough peak-memory estimate in GiB; real use varies with kernels and fragmentation (bench/run.py
    compares it with measured peaks).

    weights at their dtype; gradients + AdamW's two moments in fp32 for the trainable parameters;
    activations in the compute dtype (2 bytes under bf16/fp16, 4 in fp32): every layer's
    :func:`layer_elements` per token, or with checkpointing only each layer's input plus one layer's set
    (recomputed in the backward pass); the training process's own memory (RUNTIME_GB).
    """
    weights = shape.params * BYTES[weight_dtype]
    optimizer = shape.trainable * (4 + 8)
    tokens = batch_size * seq_len
    per_layer = layer_elements(shape)
    kept = shape.hidden * shape.layers + per_layer if checkpointing else per_layer * shape.layers
    activations = tokens * (kept + 4 * shape.hidden) * (4 if weight_dtype == "fp32" else 2)
    gib = 2**30
    runtime = RUNTIME_GB.get(device_kind, RUNTIME_GB["cpu"])
    return {
        "weights": weights / gib,
        "gradients_and_optimizer": optimizer / gib,
        "activations": activations / gib,
        "runtime": runtime,
        "total": (weights + optimizer + activations) / gib + runtime,
    }


def estimate(
    config: Any,
    device: Any,
    *,
    batch_size: int,
    checkpointing: bool,
    longest: int | None = None,
    micro_batch_tokens: int = 0,
) -> dict[str, float] | None:
    """:func:`memory_gb` for ``config`` on ``device``, with its parameter counts; None for a model whose
    config cannot be read (preflight says why). ``longest``: the longest record's tokens, where known (the
    widest batch is padded to it, or to dataset.max_length). ``micro_batch_tokens``: the most tokens one
    pass holds (finetune/batching.py; 0 = the whole batch), so the widest pass has fewer records."""
    shape = _shape(
        json.dumps(config.model.model_dump(mode="json"), sort_keys=True),
        config.task,
        config.method,
        config.lora.r,
    )
    if shape is None:
        return None
    seq_len = min(config.dataset.max_length, longest or config.dataset.max_length)
    if micro_batch_tokens:
        batch_size = min(batch_size, max(1, micro_batch_tokens // max(seq_len, 1)))
    return memory_gb(
        shape,
        weight_dtype=weights_dtype(config, device),
        batch_size=batch_size,
        seq_len=max(seq_len, 1),
        checkpointing=checkpointing,
        device_kind=device.kind,
    ) | {"params": shape.params, "trainable": shape.trainable, "seq_len": seq_len}


def weights_dtype(config: Any, device: Any) -> str:
    """bf16 / fp16 / fp32 / 4bit: what the model's weights load as on ``device``."""
    if config.method == "qlora":
        return "4bit"
    name = str(model.torch_dtype(config.model, device)).split(".")[-1]
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


@lru_cache(maxsize=32)
def _shape(model_json: str, task: str, method: str, r: int) -> Shape | None:
    """Parameter counts and sizes of the model, built on the meta device (cached: the page asks often)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cfg_model = ModelConfig(**json.loads(model_json))
    try:
        cfg = model.load_config(cfg_model)
        auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
        with torch.device("meta"):
            net = auto.from_config(cfg, trust_remote_code=cfg_model.trust_remote_code)
    except Exception:  # noqa: BLE001 - an estimate is optional; never fail over it
        return None
    params = sum(p.numel() for p in net.parameters())
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    hidden = getattr(text, "hidden_size", 0) or 0
    heads = getattr(text, "num_attention_heads", 0) or 1
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    return Shape(
        params=params,
        trainable=params if method == "full" else _lora_params(net, r),
        hidden=hidden,
        layers=getattr(text, "num_hidden_layers", 0) or 0,
        kv_dim=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
        intermediate=getattr(text, "intermediate_size", 0) or 0,
    )


def _lora_params(net: Any, r: int) -> int:
    import torch

    head = net.get_output_embeddings()
    return sum(
        r * (m.in_features + m.out_features)
        for m in net.modules()
        if isinstance(m, torch.nn.Linear) and m is not head
    )


def available_gb(device: Any) -> float:
    """What a run may plan to use: most of the GPU's memory, or the machine's RAM on a CPU."""
    if device.memory_gb:
        return device.memory_gb * HEADROOM
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 * HEADROOM
