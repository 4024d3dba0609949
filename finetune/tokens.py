"""Vocabulary edits: add tokens, compare tokenization before/after, resize and initialise, train new rows.

    python -m finetune tokens presets/demo.yaml --text "Hello, <user_name>!"

Why new rows need care under LoRA (trl 1.16, peft 0.21): SFTTrainer computes the loss through a fused LM head
that reads ``lm_head.weight`` directly, so peft's ``trainable_token_indices`` wrapper on the head crashes
(``'TrainableTokensWrapper' object has no attribute 'bias'``) and, on untied models, listing only
``embed_tokens`` never trains the output row. Instead we leave both layers unwrapped, let them take gradients,
and mask every row but the new ones: the old rows get zero gradient (so AdamW leaves them exactly as they
were, while weight_decay is 0) and the adapter is saved with its embedding layers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from finetune.config import TokensConfig
from finetune.errors import TokenError

PAD_FALLBACK = "<|pad|>"


@dataclass
class TokenChanges:
    """What :func:`apply` did to the tokenizer, to redo it on the model's embeddings."""

    new_ids: list[int] = field(default_factory=list)
    pieces: dict[int, list[int]] = field(default_factory=dict)  # new id -> ids it split into before
    pad_added: bool = False


def check_new(tokenizer: Any, cfg: TokensConfig) -> None:
    """Refuse tokens that already exist (they would silently do nothing)."""
    vocab = tokenizer.get_vocab()
    for i, tok in enumerate(cfg.add):
        if tok in vocab:
            raise TokenError(
                f"tokens.add[{i}]",
                f"{tok!r} is already in the vocabulary (id {vocab[tok]}); remove it from the list",
            )


def apply(tokenizer: Any, cfg: TokensConfig, preferred_pad: str | None = None) -> TokenChanges:
    """Add ``cfg.add`` (and a pad token if the policy needs one) to ``tokenizer`` in place.

    ``preferred_pad`` is the model family's reserved pad token (presets/models), used when it exists.
    """
    from tokenizers import AddedToken

    check_new(tokenizer, cfg)
    changes = TokenChanges()
    before = {tok: tokenizer.encode(tok, add_special_tokens=False) for tok in cfg.add}
    for tok in cfg.add:
        special = cfg.is_special(tok)
        # normalized=False: the token matches the text exactly; special tokens are never split.
        tokenizer.add_tokens([AddedToken(tok, special=special, normalized=False)], special_tokens=special)
    changes.pad_added = ensure_pad(tokenizer, cfg.pad, preferred_pad)
    for tok, ids in before.items():
        new_id = tokenizer.convert_tokens_to_ids(tok)
        changes.new_ids.append(new_id)
        changes.pieces[new_id] = ids
    if changes.pad_added:
        changes.new_ids.append(tokenizer.pad_token_id)
    return changes


def ensure_pad(tokenizer: Any, policy: str, preferred: str | None = None) -> bool:
    """Give the tokenizer a pad token per ``tokens.pad``; True when a new token had to be added.

    Padding with EOS is the classic trap: a collator that masks pad positions from the loss then also masks
    every real EOS, and the model never learns to stop. ``auto`` keeps a distinct pad or adds one.
    """
    if policy == "eos":
        tokenizer.pad_token = tokenizer.eos_token
        return False
    if policy == "auto" and tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return False
    vocab = tokenizer.get_vocab()
    for candidate in (preferred, PAD_FALLBACK):
        if candidate and candidate in vocab and candidate != tokenizer.eos_token:
            tokenizer.pad_token = candidate
            return False
    tokenizer.add_special_tokens({"pad_token": PAD_FALLBACK})
    return True


def resize_and_init(model: Any, tokenizer: Any, changes: TokenChanges, init: str) -> None:
    """Grow the embedding matrices to the tokenizer and fill the new rows per ``tokens.init``."""
    import torch

    old_rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old_rows and not changes.new_ids:
        return
    model.resize_token_embeddings(max(len(tokenizer), old_rows), mean_resizing=False)
    layers = {
        id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
    }
    with torch.no_grad():
        for layer in layers.values():
            weight = layer.weight
            mean = weight[:old_rows].float().mean(dim=0)
            for new_id in changes.new_ids:
                pieces = [p for p in changes.pieces.get(new_id, []) if p < old_rows]
                row = weight[pieces].float().mean(dim=0) if init == "mean_of_pieces" and pieces else mean
                weight[new_id] = row.to(weight.dtype)


def train_new_rows(peft_model: Any, new_ids: list[int]) -> None:
    """Under LoRA: let only the rows of ``new_ids`` learn, in the input embedding and the output head."""
    import torch

    if not new_ids:
        return
    inp, out = peft_model.get_input_embeddings(), peft_model.get_output_embeddings()
    layers = [inp] if out is None or out.weight is inp.weight else [inp, out]
    for layer in layers:
        mask = torch.zeros(layer.weight.shape[0], 1, dtype=layer.weight.dtype, device=layer.weight.device)
        mask[new_ids] = 1
        layer.weight.requires_grad_(True)
        layer.weight.register_hook(lambda grad, mask=mask: grad * mask)
    # Trainer saves adapters with save_pretrained(); make every save carry the resized embeddings, so
    # checkpoints resume and the final adapter reloads with the new tokens (peft's "auto" needs a Hub lookup).
    peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, save_embedding_layers=True)


def compare(tokenizer_before: Any, tokenizer_after: Any, text: str) -> dict[str, list[str]]:
    """The pieces ``text`` splits into before and after the vocabulary edit."""
    return {"before": _pieces(tokenizer_before, text), "after": _pieces(tokenizer_after, text)}


def _pieces(tokenizer: Any, text: str) -> list[str]:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [tokenizer.decode([i]) for i in ids]


def missing_from_vocab(tokenizer: Any, candidates: list[str]) -> list[str]:
    """The strings in ``candidates`` that the tokenizer would split into several pieces."""
    vocab = tokenizer.get_vocab()
    return [
        c for c in candidates if c not in vocab and len(tokenizer.encode(c, add_special_tokens=False)) > 1
    ]
