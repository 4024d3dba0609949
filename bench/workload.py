"""What bench/run.py trains on: a Llama-shaped model with random weights, a generated chat set, the configs.

    (imported by bench/run.py and bench/gpu.py; nothing to run on its own)

The model is built from a config dict (no download) with the tokenizer of ``builtin:tiny-llama`` (Llama 3.1's
chat format), its pad token set to Llama 3.1's reserved ``<|finetune_right_pad_id|>`` so that plain TRL and
Tuneboard pad with the same token. The chat set is seeded: a user turn of 4-30 words and an assistant answer
whose length in words is log-normal (median 25, sigma 0.9): about 230 tokens a record after the template,
4% of them cut at max_length 512, and batches of 8 records drawn at random are about 42% padding, as in a
real instruction set.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PAD = "<|finetune_right_pad_id|>"
# A small English vocabulary the tiny tokenizer knows (it was trained on the bundled samples).
WORDS = (
    "the a to of and in is it you that for on with as be at this your can order account "
    "help please thanks return shipping delivery item price time day week customer support "
    "question answer store card payment refund change address email password reset login "
    "phone number open close today tomorrow after before because when where what how why "
    "will would should could may need want know think make take give find tell ask use "
    "work call try leave feel seem show keep start run move live believe hold bring happen "
    "write provide sit stand lose pay meet include continue set learn lead understand watch "
    "follow stop create speak read allow add spend grow offer remember love consider appear "
    "buy wait serve send expect build stay fall cut reach remain suggest raise pass"
).split()
ANSWER_MEDIAN_WORDS = 25
ANSWER_SIGMA = 0.9


@dataclass(frozen=True)
class Shape:
    """One model to build: a name and the transformers config fields that differ from LlamaConfig's."""

    name: str
    model_type: str
    fields: dict[str, Any]


CPU_SHAPE = Shape(
    "llama-h256-l4",
    "llama",
    {
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 2048,
    },
)
QUICK_SHAPE = Shape(
    "llama-h64-l2",
    "llama",
    {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 1024,
    },
)


def tokenizer() -> Any:
    """builtin:tiny-llama's tokenizer (Llama 3.1 chat template), padding with Llama 3.1's reserved pad."""
    from transformers import AutoTokenizer

    from finetune import builtin

    tok = AutoTokenizer.from_pretrained(builtin.resolve("builtin:tiny-llama"))
    tok.pad_token = PAD
    return tok


def build_model(shape: Shape, folder: Path, dtype: str = "float32", device: str = "cpu") -> Path:
    """Random weights of ``shape`` plus the tokenizer, saved to ``folder`` (kept if it is there already)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # "Writing model shards" would land among the bench's lines
    tok = tokenizer()
    fields = {"vocab_size": len(tok), "tie_word_embeddings": False, **shape.fields}
    fields["vocab_size"] = max(fields["vocab_size"], len(tok))  # a real shape keeps its own, bigger vocab
    config = AutoConfig.for_model(
        shape.model_type,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype=dtype,
        **fields,
    )
    torch.manual_seed(0)
    with torch.device(device):
        net = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    net.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(folder)
    return folder


def sentence(rng: random.Random, words: int) -> str:
    """``words`` words in sentences of 6-16 words, each capitalised and ended with a full stop."""
    parts, left = [], words
    while left > 0:
        n = min(rng.randint(6, 16), left)
        chosen = rng.choices(WORDS, k=n)
        parts.append(" ".join([chosen[0].capitalize(), *chosen[1:]]) + ".")
        left -= n
    return " ".join(parts)


def chat_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` conversations {"messages": [user, assistant]} with log-normal answer lengths."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        answer_words = max(1, round(rng.lognormvariate(math.log(ANSWER_MEDIAN_WORDS), ANSWER_SIGMA)))
        user = sentence(rng, rng.randint(4, 30)).rstrip(".") + "?"
        messages = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": sentence(rng, answer_words)},
        ]
        records.append({"messages": messages})
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class Hparams:
    """What all variants share. ``steps`` is a multiple of ``logging_steps``: the last log then holds the
    final num_tokens (TRL logs it only at logging steps)."""

    batch_size: int
    learning_rate: float
    steps: int
    max_length: int
    logging_steps: int
    method: str = "full"


def tuneboard_config(model: Path, data: Path, hp: Hparams) -> dict[str, Any]:
    """The config (b) and (c) train, as a nested mapping (the YAML the page writes and the CLI reads).

    ``template.train_on: all``: plain TRL's default trains on every token of a conversation, so Tuneboard does
    too here, and the losses compare like with like (Tuneboard's own default is assistant tokens only; which
    tokens carry loss changes no tokens/s: every token is computed either way).
    """
    return {
        "task": "sft",
        "method": hp.method,
        "model": {"name_or_path": str(model), "family": "llama3.1"},
        "dataset": {"path": str(data), "max_length": hp.max_length},
        "template": {"name": "llama3.1", "train_on": "all"},
        "training": {
            "per_device_train_batch_size": hp.batch_size,
            "learning_rate": hp.learning_rate,
            "max_steps": hp.steps,
            "logging_steps": hp.logging_steps,
            "save_strategy": "no",
            "report_to": "none",
        },
    }


def write_config(path: Path, config: dict[str, Any], *, stop_check: bool = False) -> Path:
    """The config as YAML, with the after-training stop check off unless asked (it is not training)."""
    data = {**config, "after": {"stop_check": stop_check}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")  # safe_dump quotes "no"
    return path


def plain_args(model: Path, data: Path, out: Path, hp: Hparams) -> list[str]:
    """bench/plain_trl.py's command-line arguments for the same run."""
    args = [str(model), str(data), str(out), "--steps", str(hp.steps), "--batch-size", str(hp.batch_size)]
    args += ["--lr", str(hp.learning_rate), "--max-length", str(hp.max_length)]
    args += ["--logging-steps", str(hp.logging_steps)]
    return args + (["--lora"] if hp.method == "lora" else [])
