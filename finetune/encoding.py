"""Conversations as token ids and loss masks for the trainer: encoded once, then read from the cache.

    (used by finetune/train.py and finetune/evaluate.py; files in CACHE/tokenized, CACHE: builtin.cache_root)

The records are rendered by the sandboxed template renderer the preview uses (templates.encode), so TRL
trains on exactly what the page showed and never runs a template itself. The result is an Arrow file named
by a hash of everything it depends on: the records (the dataset's fingerprint, which follows its contents,
split and selection), the template, which tokens carry loss, the tokenizer (its vocabulary and added tokens)
and max_length. A second run on the same data starts training without encoding again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from finetune import builtin, templates

VERSION = "1"  # bump when templates.encode changes what it produces
FOLDER = "tokenized"


def tokenized(config: Any, checked: Any, ds: Any) -> Any:
    """``ds`` (a ``messages`` column) as input_ids, plus assistant_masks under ``train_on: assistant``.
    TRL still builds the labels from the mask, truncates to max_length and drops records left without loss."""
    assistant_only = config.template.train_on == "assistant"

    def encode(batch: dict[str, list]) -> dict[str, list]:
        done = templates.encode(
            checked.tokenizer, checked.template, batch["messages"], assistant_only=assistant_only
        )
        out = {"input_ids": [e.ids for e in done]}
        return out | ({"assistant_masks": [e.mask for e in done]} if assistant_only else {})

    if not hasattr(ds, "__len__"):  # a stream (dataset.streaming): encoded as the trainer reads it
        return ds.map(encode, batched=True, batch_size=templates.BATCH, remove_columns=ds.column_names,
                      features=_features(assistant_only))  # fmt: skip
    path = cache_file(config, checked, ds)
    hit = path is not None and path.is_file()
    started = time.monotonic()
    out = ds.map(
        encode,
        batched=True,
        batch_size=templates.BATCH,
        remove_columns=ds.column_names,
        cache_file_name=str(path) if path else None,
        load_from_cache_file=True,
        desc="Tokenizing",
    )
    how = "read from the cache" if hit else f"in {time.monotonic() - started:.1f} s"
    where = f" ({path.name})" if path else ""
    print(f"tokenized {len(out):,} records {how}{where}", file=sys.stderr, flush=True)  # stdout: answers
    return out


def _features(assistant_only: bool) -> Any:
    """The encoded columns' types, named up front: TRL tells encoded records by their column names, which a
    mapped stream does not know without them."""
    import datasets

    ids = datasets.List(datasets.Value("int64"))
    return datasets.Features({"input_ids": ids, **({"assistant_masks": ids} if assistant_only else {})})


def cache_file(config: Any, checked: Any, ds: Any) -> Path | None:
    """Where the encoded records live in the cache; None when the tokenizer cannot be fingerprinted."""
    vocabulary = _tokenizer_text(checked.tokenizer)
    if vocabulary is None or not getattr(ds, "_fingerprint", None):
        return None
    key = {
        "version": VERSION,
        "records": ds._fingerprint,
        "template": checked.template.source,
        "train_on": config.template.train_on,
        "tokenizer": hashlib.sha256(vocabulary.encode("utf-8")).hexdigest(),
        "max_length": config.dataset.max_length,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    folder = builtin.cache_root() / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest}.arrow"


def _tokenizer_text(tokenizer: Any) -> str | None:
    """A fast tokenizer's whole definition (vocabulary, merges, added tokens) as JSON text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend.to_str() if backend is not None else None
