"""Variant (a) of bench/run.py: the fine-tuning script a user writes from TRL's SFTTrainer docs.

    .venv/bin/python bench/plain_trl.py MODEL_DIR DATA.jsonl OUTPUT_DIR [--steps 40] [--batch-size 8]
        [--lr 1e-3] [--max-length 512] [--logging-steps 5] [--lora]

TRL's quickstart with the run's numbers filled in and nothing else: the data is a conversational
("messages") JSONL, so TRL applies the tokenizer's own chat template and trains on every token (its default);
the tokenizer is the model folder's; everything not passed below keeps TRL 1.16's default (padding to the
longest record of each batch, activation checkpointing on, fused AdamW, a linear schedule, seed 42). Two
settings are the bench's, and the same in Tuneboard's config: ``save_strategy="no"`` and
``report_to="none"``. On a CPU, ``use_cpu=True`` and ``bf16=False``: TRL 1.16 defaults bf16 to True and
refuses to start on a CPU without use_cpu, and with it would autocast to bf16, which Tuneboard does not do on
a CPU (fp32 on both keeps the precision equal). ``--lora`` adds peft's LoraConfig with Tuneboard's defaults
(r 16, alpha 32, dropout 0.05, all linear layers), as TRL's PEFT guide shows.

At the end it writes OUTPUT_DIR/trainer_state.json (its log_history: loss and num_tokens per log, and the
final train_runtime), which the bench reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from datasets import load_dataset
from trl import SFTConfig, SFTTrainer


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter instead of every weight")
    return parser.parse_args()


def main() -> None:
    args = parse()
    dataset = load_dataset("json", data_files=str(args.data), split="train")
    on_cpu = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False}
    training_args = SFTConfig(
        output_dir=str(args.output_dir),
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        max_steps=args.steps,
        max_length=args.max_length,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to="none",
        **on_cpu,
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    trainer = SFTTrainer(
        model=str(args.model), args=training_args, train_dataset=dataset, peft_config=peft_config
    )
    trainer.train()
    trainer.state.save_to_json(str(args.output_dir / "trainer_state.json"))


if __name__ == "__main__":
    main()
