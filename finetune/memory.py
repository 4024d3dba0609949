"""A rough peak-memory estimate of a run, from the model's config alone (no weights are loaded).

    python -m finetune plan presets/demo.yaml      # "== Memory (rough)"

The parameters are counted on the meta device; the rest is arithmetic (:func:`memory_gb`). ``plan`` and the
Hyperparameters section show it, and finetune/speed.py turns activation checkpointing on only when the
estimate without it would not fit the device.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from finetune import model
from finetune.config import ModelConfig

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "4bit": 0.55}  # 4-bit: nf4 weights plus quantization constants
HEADROOM = 0.9  # the share of a device's memory a run may plan for (CUDA context, fragmentation)


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


def estimate(config: Any, device: Any, *, batch_size: int, checkpointing: bool) -> dict[str, float] | None:
    """:func:`memory_gb` for ``config`` on ``device``, with its parameter counts; None for a model whose
    config cannot be read (preflight says why)."""
    shape = _shape(
        json.dumps(config.model.model_dump(mode="json"), sort_keys=True),
        config.task,
        config.method,
        config.lora.r,
    )
    if shape is None:
        return None
    return memory_gb(
        shape["params"],
        trainable=shape["trainable"],
        weight_dtype=weights_dtype(config, device),
        batch_size=batch_size,
        seq_len=config.dataset.max_length,
        hidden=shape["hidden"],
        layers=shape["layers"],
        checkpointing=checkpointing,
    ) | {"params": shape["params"], "trainable": shape["trainable"]}


def weights_dtype(config: Any, device: Any) -> str:
    """bf16 / fp16 / fp32 / 4bit: what the model's weights load as on ``device``."""
    if config.method == "qlora":
        return "4bit"
    name = str(model.torch_dtype(config.model, device)).split(".")[-1]
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


@lru_cache(maxsize=32)
def _shape(model_json: str, task: str, method: str, r: int) -> dict[str, int] | None:
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
    return {
        "params": params,
        "trainable": params if method == "full" else _lora_params(net, r),
        "hidden": getattr(text, "hidden_size", 0),
        "layers": getattr(text, "num_hidden_layers", 0),
    }


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
