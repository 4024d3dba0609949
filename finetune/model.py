"""Load the model and tokenizer for training: dtype, quantization, LoRA, new tokens.

    python -c "from finetune import config, model; print(model.load_tokenizer(config.Config().model))"

Only the training process (and tests) import this module; the dashboard never loads a model to train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune import builtin, paths, presets
from finetune.config import Config, ModelConfig
from finetune.errors import ModelError


@dataclass
class Device:
    kind: str  # "cuda" or "cpu"
    name: str
    bf16: bool
    memory_gb: float | None
    count: int = 1  # GPUs visible (CUDA_VISIBLE_DEVICES); 1 for the CPU


def detect_device() -> Device:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gb = props.total_memory / 2**30
        return Device("cuda", props.name, torch.cuda.is_bf16_supported(), gb, torch.cuda.device_count())
    return Device("cpu", "CPU", False, None)


def resolve_path(cfg: ModelConfig) -> str:
    """The local folder or Hub id to load; a missing local path gets a clear message."""
    try:
        path = builtin.resolve(cfg.name_or_path)
    except ValueError as exc:
        raise ModelError("model.name_or_path", str(exc)) from None
    if paths.is_system(path):
        raise ModelError("model.name_or_path", paths.system_refusal(path))
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists() or path.count("/") != 1
    if looks_local and not Path(path).expanduser().is_dir():
        raise ModelError(
            "model.name_or_path", f"folder {path!r} does not exist; give a local folder or a Hub id"
        )
    return str(Path(path).expanduser()) if looks_local else path


# What AutoTokenizer reads in a folder; a fine-tuned checkpoint saved without its tokenizer has none of them.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def _common_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    # trust_remote_code passed explicitly: left as None, transformers may prompt on stdin.
    return {
        "revision": cfg.revision,
        "trust_remote_code": cfg.trust_remote_code,
        "token": os.environ.get("HF_TOKEN"),
    }


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    path = resolve_path(cfg)
    folder = Path(path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            "model.name_or_path",
            f"folder {path!r} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): copy them from "
            "the model this one was trained from, or save them there with tokenizer.save_pretrained(folder)",
        )
    try:
        return AutoTokenizer.from_pretrained(path, **_common_kwargs(cfg))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            "model.name_or_path", f"cannot load a tokenizer from {path!r}: {_why(exc, path)}"
        ) from None


def load_config(cfg: ModelConfig) -> Any:
    from transformers import AutoConfig

    path = resolve_path(cfg)
    try:
        return AutoConfig.from_pretrained(path, **_common_kwargs(cfg))
    except (OSError, ValueError) as exc:
        raise ModelError(
            "model.name_or_path", f"cannot read a model config from {path!r}: {_why(exc, path)}"
        ) from None


def torch_dtype(cfg: ModelConfig, device: Device) -> Any:
    import torch

    choice = cfg.dtype
    if choice == "auto":
        choice = "bf16" if device.bf16 else "fp32"
    if choice == "bf16" and device.kind == "cpu":
        choice = "fp32"  # bf16 weights train slowly and imprecisely on CPU; mixed precision is off there too
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice]


def load_model(
    config: Config, device: Device, num_labels: int | None = None, attn_implementation: str | None = None
) -> Any:
    """The base model, on ``device``, quantized for qlora; LoRA is added by the trainer via peft_config.
    ``attn_implementation``: the kernel finetune/speed.py chose (config.model's, unless unset)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = _common_kwargs(config.model) | {"dtype": torch_dtype(config.model, device)}
    if attn_implementation or config.model.attn_implementation:
        kwargs["attn_implementation"] = attn_implementation or config.model.attn_implementation
    if config.method == "qlora":
        kwargs["quantization_config"] = quantization_config(device)
        kwargs["device_map"] = {"": 0}
    path = resolve_path(config.model)
    try:
        if config.task == "classification":
            return AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels, **kwargs)
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            "model.name_or_path", f"cannot load a model from {path!r}: {_first_line(exc)}"
        ) from None


def quantization_config(device: Device) -> Any:
    """4-bit NF4 settings for qlora; refuses a device or an install that cannot run it (preflight calls
    this too, so the refusal comes before a run directory exists)."""
    import importlib.util

    if device.kind != "cuda":
        raise ModelError(
            "method", "qlora needs a CUDA GPU (4-bit bitsandbytes kernels); use method: lora on CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("method", "qlora needs the bitsandbytes package: pip install bitsandbytes")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device.bf16 else torch.float16,
    )


def lora_config(config: Config) -> Any:
    from peft import LoraConfig

    task_type = "SEQ_CLS" if config.task == "classification" else "CAUSAL_LM"
    return LoraConfig(**config.lora.model_dump(), task_type=task_type)  # the schema uses peft's names


def family(config: ModelConfig, model_type: str | None = None) -> dict[str, Any] | None:
    """The model-family preset for this model: named in the config, else matched on name and model_type."""
    if config.family:
        return presets.load("models", config.family)
    name = config.name_or_path.lower()
    by_type = None
    for fid in presets.names("models"):
        fam = presets.load("models", fid)
        if any(p in name for p in fam.get("name_patterns", [])):
            return fam
        if model_type and model_type in fam.get("model_types", []) and by_type is None:
            by_type = fam
    return by_type


def _why(exc: BaseException, path: str) -> str:
    """The loader's first line; for a Hub id while offline, what to do instead of what failed."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE and not Path(path).expanduser().exists():
        return (
            "it is not in the local Hugging Face cache and Hub downloads are off (HF_HUB_OFFLINE is set); "
            "download it first (hf download ID) or give a local folder"
        )
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
