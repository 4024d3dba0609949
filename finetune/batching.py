"""Length-grouped batches in random order: little padding, and every step a fair draw of the data.

    (used by finetune/train.py when training.train_sampling_strategy is group_by_length)

transformers' group_by_length sampler sorts each group of ~50 batches by length, longest first, so the
steps of a group go from the longest records to the shortest: the first steps of a run see only long
records, and a run compared at equal tokens seen has made fewer updates. Here the same groups are cut into
the same batches (transformers' get_length_grouped_indices), then the batches are shuffled, the batch with
the longest record kept first (a run that does not fit fails at once, not an hour in).
"""

from __future__ import annotations

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
