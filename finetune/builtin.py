"""Tiny models built on the spot, so demos and tests train for real without downloading anything.

    python -m finetune builtin tiny-llama      # prints the folder it built (cached)

``builtin:tiny-llama`` is Llama-shaped with untied embeddings and Llama 3.1's chat format;
``builtin:tiny-gemma`` is Gemma-2-shaped with tied embeddings and Gemma 2's chat format. Each has a
byte-level BPE tokenizer trained on the bundled sample data, whose vocabulary holds the template's special
tokens. A few hundred thousand parameters: a few MB on disk, seconds to train on a CPU.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

PRESETS = Path(__file__).resolve().parent.parent / "presets"
BUILD_VERSION = "1"  # bump to rebuild cached models after changing the recipe below

SPECS: dict[str, dict] = {
    "tiny-llama": {
        "model_type": "llama",
        "template": "llama3.1",
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": None,  # like Llama 3.1: no pad token, so the pad policy has to choose one
        "extra": ["<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|finetune_right_pad_id|>"],
        "tied": False,
    },
    "tiny-gemma": {
        "model_type": "gemma2",
        "template": "gemma2",
        "bos": "<bos>",
        "eos": "<eos>",
        "pad": "<pad>",
        "extra": ["<unk>", "<start_of_turn>", "<end_of_turn>"],
        "tied": True,
    },
}


def cache_root() -> Path:
    return Path(os.environ.get("TUNEBOARD_CACHE", Path.home() / ".cache" / "tuneboard"))


def is_builtin(name_or_path: str) -> bool:
    return name_or_path.startswith("builtin:")


def resolve(name_or_path: str) -> str:
    """``builtin:NAME`` -> the folder of the built model (built on first use); anything else unchanged."""
    if not is_builtin(name_or_path):
        return name_or_path
    name = name_or_path.removeprefix("builtin:")
    if name not in SPECS:
        raise ValueError(f"unknown builtin model {name!r}; known: {', '.join('builtin:' + n for n in SPECS)}")
    folder = cache_root() / f"{name}-v{BUILD_VERSION}-{_corpus_hash()}"
    if not (folder / "config.json").is_file():
        build(name, folder)
    return str(folder)


def build(name: str, folder: Path) -> Path:
    """Write a tiny model + tokenizer to ``folder`` atomically (a half-built folder is never used)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = SPECS[name]
    tokenizer = _train_tokenizer(spec)
    config = AutoConfig.for_model(
        spec["model_type"],
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=spec["tied"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.replace(folder)
    except OSError:  # another process finished the same build first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _train_tokenizer(spec: dict):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in [spec["bos"], spec["eos"], spec["pad"], *spec["extra"]] if t]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=spec["bos"],
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        extra_special_tokens=spec["extra"],
    )
    fast.chat_template = (PRESETS / "templates" / f"{spec['template']}.jinja").read_text(encoding="utf-8")
    return fast


def _corpus_files() -> list[Path]:
    return sorted(p for p in (PRESETS / "data").glob("*") if p.suffix in {".jsonl", ".json", ".csv", ".txt"})


def _corpus() -> list[str]:
    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "こんにちは。今日はいい天気ですね。",
        "system user assistant",
    ]
    for path in _corpus_files():
        lines.extend(path.read_text(encoding="utf-8").splitlines())
    return lines


def _corpus_hash() -> str:
    """Tie the cache to the recipe inputs, so editing the samples or templates rebuilds the model."""
    digest = hashlib.sha256(BUILD_VERSION.encode())
    for path in [*_corpus_files(), *sorted((PRESETS / "templates").glob("*.jinja"))]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]
