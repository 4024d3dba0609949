"""Length-grouped batches in random order: little padding, and every step a fair draw of the data.

    (used by finetune/train.py: training.train_sampling_strategy group_by_length, training.micro_batch_tokens)

transformers' group_by_length sampler sorts each group of ~50 batches by length, longest first, so the
steps of a group go from the longest records to the shortest: the first steps of a run see only long
records, and a run compared at equal tokens seen has made fewer updates. Here the same groups are cut into
the same batches (transformers' get_length_grouped_indices), then the batches are shuffled, the batch with
the longest record kept first (a run that does not fit fails at once, not an hour in).

Grouping puts the longest records in one batch, whose activations would set the run's memory peak: with
training.micro_batch_tokens (finetune/speed.py: 2048 on a CPU), a batch wider than the budget goes through
the model in passes (:func:`in_passes`), the same update for the memory of one pass.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class ShuffledLengthGroups(LengthGroupedSampler):
    """transformers' LengthGroupedSampler with its batches drawn in random order."""

    def __iter__(self):
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if not batches:
            return iter([])
        order = (torch.randperm(len(batches) - 1, generator=self.generator) + 1).tolist()
        return iter([i for j in [0, *order] for i in batches[j]])


def shuffled(trainer_class: type) -> type:
    """``trainer_class`` (SFTTrainer, Trainer) drawing length-grouped batches in random order."""

    class Shuffled(trainer_class):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                return ShuffledLengthGroups(
                    sampler.batch_size, lengths=sampler.lengths, generator=sampler.generator
                )
            return sampler

    Shuffled.__name__ = trainer_class.__name__  # the run's log names the library class it trains with
    return Shuffled


def split(batch: dict[str, Any], max_tokens: int) -> list[dict[str, Any]]:
    """``batch`` cut into row slices of at most ``max_tokens`` padded tokens each (a row longer than that
    alone), as even as the rows allow; each slice loses the trailing padding none of its rows use."""
    rows, width = batch["input_ids"].shape
    if rows < 2 or rows * width <= max_tokens:
        return [batch]
    pieces = -(-rows // max(1, max_tokens // width))
    per = -(-rows // pieces)
    return [_trimmed(_rows(batch, start, per, rows), width) for start in range(0, rows, per)]


def _rows(batch: dict[str, Any], start: int, count: int, rows: int) -> dict[str, Any]:
    return {k: v[start : start + count] if _per_row(v, rows) else v for k, v in batch.items()}


def _trimmed(part: dict[str, Any], width: int) -> dict[str, Any]:
    """Without the trailing columns that are padding in every row (the collators pad on the right)."""
    mask = part.get("attention_mask")
    if mask is None:
        return part
    used = int(mask.any(0).nonzero().max()) + 1
    return {
        k: v[:, :used] if _per_row(v) and v.dim() == 2 and v.shape[1] == width else v for k, v in part.items()
    }


def _per_row(value: Any, rows: int | None = None) -> bool:
    return torch.is_tensor(value) and value.dim() > 0 and (rows is None or value.shape[0] == rows)


def in_passes(trainer_class: type, max_tokens: int) -> type:
    """``trainer_class`` putting each batch through the model in passes of at most ``max_tokens`` tokens
    (0: the whole batch at once). Each pass's loss is its tokens' sum over the whole batch's count
    (``num_items_in_batch``), so the summed gradients are the whole batch's: the same update, holding one
    pass's activations. Where the trainer has no such count (a model without loss kwargs), batches stay
    whole. Every pass but the last skips the gradient sync of a multi-process run."""

    class InPasses(trainer_class):
        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            parts = split(inputs, max_tokens) if max_tokens and num_items_in_batch is not None else [inputs]
            loss = None
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                    step = super().training_step(model, part, num_items_in_batch)
                loss = step if loss is None else loss + step
            return loss

    InPasses.__name__ = trainer_class.__name__  # the run's log names the library class it trains with
    return InPasses
