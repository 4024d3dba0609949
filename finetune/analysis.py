"""What the page shows before a run, from the engine: plan, token lengths, rendering, tokens, schedule.

    (run in the analysis process, finetune/analyst.py, which the page's finetune/ui/previews.py asks)
    .venv/bin/pytest tests/ui/test_previews.py tests/test_analyst.py -q

No model weights: ``plan.report`` and ``preflight.run`` load a tokenizer and the data (the parameter count
comes from a model built on the meta device). Results are plain data the page keeps in its state; the
expensive engine objects stay in a small cache keyed by the config, so the page's sections, each rendering
its part of one analysis, do not repeat the work. This module imports torch, transformers and TRL on first
use: the dashboard's own process never imports it, so it stays small (finetune/analyst.py says why).
"""

from __future__ import annotations

import json
import re
import threading
from array import array
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune import data, duration, effective, jobs, model, plan, preflight, templates, tokens
from finetune.errors import TuneboardError

_LOCK = threading.Lock()  # guards _CACHE and _BUILDING; never held while something is built
_CACHE: OrderedDict[str, Any] = OrderedDict()
_BUILDING: dict[str, threading.Lock] = {}  # one build per key at a time; other keys go on meanwhile
_CACHE_SIZE = 6
# Builds that read a whole dataset, at once: each one's memory is bounded, so this bounds the server's.
_READERS = threading.BoundedSemaphore(2)
_DEVICE: dict[str, Any] = {}

TOKEN_LIKE = re.compile(r"<[^<>\s]{1,40}>|\[[^\[\]\s]{1,40}\]")


def key_of(config: cfg.Config) -> str:
    """A cache key: the parts of the config that change tokenizer, template or data (not hyperparameters)."""
    parts = config.model_dump(mode="json", include={"task", "model", "dataset", "template", "tokens"})
    return json.dumps(parts, sort_keys=True, ensure_ascii=False)


def import_libraries() -> None:
    """Import the names of transformers, TRL and peft the analysis uses (finetune/analyst.py says why)."""
    import peft
    import transformers
    import trl

    names = {
        transformers: ("AutoConfig", "AutoTokenizer", "PreTrainedTokenizerFast", "TrainingArguments",
                       "get_scheduler", "GenerationConfig", "BitsAndBytesConfig"),
        trl: ("SFTConfig",),
        peft: ("LoraConfig",),
    }  # fmt: skip
    for module, names_in in names.items():
        for name in names_in:
            getattr(module, name)


def _cached(key: str, build: Any) -> Any:
    """``build()``'s value for ``key``, built once: a slow build (a big file) never holds up other keys."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        building = _BUILDING.setdefault(key, threading.Lock())
    with building:
        with _LOCK:
            if key in _CACHE:  # built by the thread we waited for
                return _CACHE[key]
        try:
            value = build()
        except BaseException:
            with _LOCK:
                _BUILDING.pop(key, None)
            raise
        with _LOCK:
            _CACHE[key] = value
            _BUILDING.pop(key, None)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return value


def _reading(build: Any) -> Any:
    with _READERS:
        return build()


def checked(config: cfg.Config) -> preflight.Checked:
    """preflight.run, cached; raises the engine's TuneboardError."""
    build = lambda: preflight.run(config, sample=plan.SAMPLE)  # noqa: E731
    return _cached("checked:" + key_of(config), lambda: _reading(build))


def dataset_preview(dataset: cfg.DatasetConfig, rows: int = 20) -> dict[str, Any]:
    """data.preview (columns, first rows, detected layout and mapping); raises DataError."""
    key = "preview:" + dataset.model_dump_json()
    return _cached(key, lambda: _reading(lambda: data.preview(dataset, rows)))


# ---------------------------------------------------------------- the analysis


def analyze(config: cfg.Config) -> dict[str, Any]:
    """Everything that depends on the data, model, template and tokens, as plain data (cached on those).

    Keys: records, layout, columns, lengths (data.length_stats, plus ``records``: a ``count`` below it is a
    sample), counting (every record's lengths are worth counting: count_every_record), template,
    detected_template, family, model_type, vocab (before/after), specials, warnings, device. Raises a
    TuneboardError.
    Hyperparameters are :func:`summary`'s: cheap, so computed on every change.
    """
    if config.launch.distributed:  # launch is not in the cache key (it changes no data): checked every time
        preflight.check_launch(config.launch, model.detect_device())
    key = key_of(config)
    every = every_record_lengths(key)  # once counted, the analysis with them replaces the sample's
    name = "analysis:" + key + (":every" if every is not None else "")
    return dict(_cached(name, lambda: _analyze(config, every)))


def _analyze(config: cfg.Config, every: Any = None) -> dict[str, Any]:
    ch = checked(config)
    report = plan.report(config, ch, None if every is None else list(every))
    device = report["device"]
    _DEVICE["device"] = device
    fam = ch.family or {}
    return {
        "key": key_of(config),
        "task": config.task,
        "records": report["dataset"]["train"],
        "eval_records": report["dataset"]["eval"],
        "layout": report["dataset"]["layout"],
        "columns": report["dataset"]["columns"],
        "lengths": report["dataset"]["lengths"],
        "streamed": report["dataset"]["streamed"],
        # The lengths come from the first records and every record is worth counting (count_every_record).
        "counting": every is None and plan.every_record(config, report["dataset"]["lengths"]),
        "max_length": config.dataset.max_length,
        "template": ch.template.id if ch.template else None,
        # Text the template writes into every record whatever the data (Llama 3.1's dated system header).
        "every_record": ch.template.meta.get("every_record") if ch.template else None,
        "family": fam.get("id"),
        "family_name": fam.get("name"),
        "family_template": fam.get("template"),
        "model_type": ch.model_type,
        "detected_template": detect_template(config),
        "vocab_before": len(ch.tokenizer_before),
        "vocab_after": len(ch.tokenizer),
        "specials": specials(ch.tokenizer_before),
        "new_tokens": report["new_tokens"],
        "missing_template_tokens": missing_template_tokens(ch),
        "classes": class_counts(ch),
        "bos": added_bos(ch.tokenizer),
        "eos": ch.tokenizer.eos_token,
        "packing": bool(config.training.packing),
        "classes_sampled": len(ch.dataset.train) if len(ch.dataset.train) < ch.dataset.n_records else None,
        "warnings": list(report["warnings"]),
        "device": {"kind": device.kind, "name": device.name, "memory_gb": device.memory_gb},
    }


# ---------------------------------------------------------------- token lengths of every record
# The analysis shows the first records' lengths at once; where every record is worth counting
# (plan.every_record), the page starts count_every_record, follows every_record_state, and analyses again once
# the lengths are in (the analysis is cached apart then).

_EVERY: OrderedDict[str, dict[str, Any]] = OrderedDict()  # key_of(config) -> a count's state; under _LOCK
_EVERY_SIZE = 16
_COUNTING = threading.BoundedSemaphore(1)  # one count at a time uses the CPUs; the others wait their turn


def count_every_record(config: cfg.Config) -> None:
    """Measure every record's token length in a background thread (preflight.all_lengths), once per key."""
    key = key_of(config)
    with _LOCK:
        if key in _EVERY:
            return
        state = _EVERY[key] = {"read": 0, "total": 0, "lengths": None, "error": None}
        while len(_EVERY) > _EVERY_SIZE:
            _EVERY.popitem(last=False)
    threading.Thread(target=_count, args=(config, state), daemon=True, name="tuneboard-lengths").start()


def _count(config: cfg.Config, state: dict[str, Any]) -> None:
    def progress(read: int, total: int) -> None:
        with _LOCK:
            state.update(read=read, total=total)

    try:
        with _COUNTING:
            lengths = array("q", preflight.all_lengths(checked(config), progress))  # 8 bytes a record
        with _LOCK:
            state["lengths"] = lengths
    except Exception as exc:  # noqa: BLE001 - the page says why, beside the first records' statistics
        error = exc.message if isinstance(exc, TuneboardError) else f"{type(exc).__name__}: {exc}"
        with _LOCK:
            state["error"] = error


def every_record_state(key: str) -> dict[str, Any] | None:
    """A count's progress: rows ``read`` of ``total``, ``done`` (its lengths are in) or its ``error``; None
    when none was started for ``key``."""
    with _LOCK:
        state = _EVERY.get(key)
        if state is None:
            return None
        return {"read": state["read"], "total": state["total"], "done": state["lengths"] is not None,
                "error": state["error"]}  # fmt: skip


def every_record_lengths(key: str) -> Any:
    """Every record's token lengths, once counted for ``key`` (None until then)."""
    with _LOCK:
        state = _EVERY.get(key)
        return state["lengths"] if state else None


def added_bos(tokenizer: Any) -> str | None:
    """The BOS token the tokenizer writes before a plain text (None when it writes none)."""
    ids = tokenizer("a")["input_ids"]
    return (
        tokenizer.bos_token
        if ids and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
        else None
    )


def class_counts(ch: preflight.Checked) -> list[dict[str, Any]]:
    """A classification dataset's labels with how many records each has (of those read), in label order."""
    names = ch.dataset.label_names or []
    counts = Counter(ch.dataset.train["label"]) if names else Counter()
    return [{"label": name, "count": counts.get(i, 0)} for i, name in enumerate(names)]


def detect_template(config: cfg.Config) -> str | None:
    """The preset matching the model's own chat template (None: it has none, or none matches)."""
    return _cached(
        "detect:" + config.model.model_dump_json(), lambda: templates.detect(checked(config).tokenizer_before)
    )


def specials(tokenizer: Any) -> list[str]:
    found = list(
        dict.fromkeys([*tokenizer.all_special_tokens, *getattr(tokenizer, "added_tokens_encoder", {})])
    )
    return found[:200]


def missing_template_tokens(ch: preflight.Checked) -> list[str]:
    """Special tokens the chosen template writes that the tokenizer (after tokens.add) would split."""
    if ch.template is None:
        return []
    vocab = ch.tokenizer.get_vocab()
    return [
        tok
        for tok in ch.template.meta.get("special_tokens") or []
        if tok not in vocab or len(ch.tokenizer.encode(tok, add_special_tokens=False)) != 1
    ]


# ---------------------------------------------------------------- template rendering


def render_record(config: cfg.Config, index: int) -> dict[str, Any]:
    """One training record as the model sees it: token pieces with ids, loss mask and special flags.

    Only the start of a long record is tokenized (preflight.char_budget): what fits in max_length. It counts
    as cut exactly when preflight.record_lengths (section 1's histogram) counts it over max_length.
    """
    ch = checked(config)
    train = ch.dataset.train
    if not len(train):
        return {"index": 0, "count": 0, "pieces": [], "truncated": False}
    index = max(0, min(int(index or 0), len(train) - 1))
    record, max_length = train[index], config.dataset.max_length
    ids, mask, full = _encode_record(config, ch, record)
    ids, mask = ids[:max_length], mask[:max_length]  # what training keeps (right truncation)
    return {
        "index": index,
        "count": len(train),
        "pieces": pieces(ch.tokenizer, ids, mask),
        "truncated": full > max_length,
        "full_tokens": full,
        "tokens": len(ids),
        "loss_tokens": sum(mask),
        "label": _label_name(config, ch, record),
    }


def _encode_record(
    config: cfg.Config, ch: preflight.Checked, record: dict[str, Any]
) -> tuple[list[int], list[int], int]:
    """The start of ``record`` that fits max_length, tokenized: (ids, loss mask, the whole record's length
    in tokens, estimated from the share of it that was tokenized)."""
    budget = preflight.char_budget(config.dataset.max_length)
    if config.task == "sft":
        messages, scale = preflight.clip_messages(record["messages"], budget)
        assistant_only = config.template.train_on == "assistant"  # preflight refused it without markers
        (encoded,) = templates.encode(ch.tokenizer, ch.template, [messages], assistant_only=assistant_only)
        return encoded.ids, encoded.mask, round(len(encoded.ids) * scale)
    text, scale = preflight.clip_text(record["text"], budget)
    if config.task == "text" and scale == 1 and ch.tokenizer.eos_token:
        text += ch.tokenizer.eos_token  # what TRL appends to a whole text record, so the model learns its end
    ids = ch.tokenizer(text)["input_ids"]
    mask = [1] * len(ids) if config.task == "text" else [0] * len(ids)
    return ids, mask, round((len(ids) + 1) * scale)  # + the end-of-text token, as record_lengths counts it


def _label_name(config: cfg.Config, ch: preflight.Checked, record: dict[str, Any]) -> str | None:
    """A classification record's label by name (its number where the data names none); None otherwise."""
    if config.task != "classification" or not isinstance(record.get("label"), int):
        return None
    names = ch.dataset.label_names or []
    return names[record["label"]] if record["label"] < len(names) else str(record["label"])


def family_of(model: cfg.ModelConfig) -> dict[str, Any] | None:
    """plan.model_family, cached: asked on every model change, and reading a config may mean a Hub request."""
    return _cached("family:" + model.model_dump_json(), lambda: plan.model_family(model))


def pieces(tokenizer: Any, ids: list[int], mask: list[int] | None = None) -> list[dict[str, Any]]:
    """Readable pieces: ids decoded one by one; ids sharing one character's UTF-8 bytes shown together."""
    special_ids = set(tokenizer.all_special_ids) | {
        i for t, i in getattr(tokenizer, "added_tokens_encoder", {}).items() if t
    }
    mask = mask if mask is not None else [0] * len(ids)
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(ids):
        j = i + 1
        text = tokenizer.decode(ids[i:j])
        while text.endswith("\ufffd") and j < len(ids) and j - i < 16:  # a character continues in the next id
            j += 1
            text = tokenizer.decode(ids[i:j])
        out.append(
            {
                "text": text,
                "ids": ids[i:j],
                "loss": any(mask[i:j]),
                "special": any(x in special_ids for x in ids[i:j]),
            }
        )
        i = j
    return out


def tokenize_compare(config: cfg.Config, text: str) -> dict[str, list[dict[str, Any]]]:
    """``text`` split by the tokenizer as loaded and after the config's token edits."""
    ch = checked(config)
    before = ch.tokenizer_before.encode(text or "", add_special_tokens=False)
    after = ch.tokenizer.encode(text or "", add_special_tokens=False)
    return {"before": pieces(ch.tokenizer_before, before), "after": pieces(ch.tokenizer, after)}


def scan_token_like(config: cfg.Config, limit: int = 5000) -> list[dict[str, Any]]:
    """Strings like ``<name>`` or ``[TAG]`` in the records: how often, and whether the vocabulary has them."""
    ch = checked(config)
    ds = ch.dataset.train
    budget = preflight.char_budget(config.dataset.max_length)
    counts: Counter[str] = Counter()
    for record in ds.select(range(min(limit, len(ds)))):
        if "messages" in record:
            text = "\n".join(str(m.get("content") or "")[:budget] for m in record["messages"])
        else:
            text = str(record.get("text") or "")[:budget]
        counts.update(TOKEN_LIKE.findall(text))
    missing = set(tokens.missing_from_vocab(ch.tokenizer, list(counts)))
    return [{"token": tok, "count": n, "missing": tok in missing} for tok, n in counts.most_common(100)]


def unused_tokens(config: cfg.Config) -> list[str]:
    """The tokens the config adds that the data never contains (preflight.unused_tokens)."""
    return preflight.unused_tokens(checked(config))


def run_files(config: cfg.Config) -> dict[str, str]:
    """Start's check, before the page creates the run directory: jobs.checked_files."""
    return jobs.checked_files(config)


def check_again(run_dir: str) -> None:
    """Resume's check of a run directory: jobs.check_again."""
    jobs.check_again(Path(run_dir))


def effective_config(config: cfg.Config) -> dict[str, Any]:
    """Every value the run would use, library defaults included, as effective_config.yaml holds them."""
    return effective.as_yaml_dict(effective.effective(config))


# ---------------------------------------------------------------- hyperparameters


def summary(
    config: cfg.Config, records: int, mean_tokens: float = 0.0, longest: int | None = None
) -> dict[str, Any]:
    """Step arithmetic, the learning-rate schedule, a memory estimate and how long the run will take
    (``mean_tokens``: a record's mean length cut at max_length; ``longest``: the longest record's tokens);
    cheap enough for every change."""
    device = _DEVICE.get("device")
    cuda = bool(device and device.kind == "cuda")
    bf16_ok = bool(device and device.bf16)
    has_eval = config.dataset.validation_split > 0
    args = effective.training_args(
        config,
        effective.RUN_DIR_PLACEHOLDER,
        cuda=cuda,
        bf16_ok=bf16_ok,
        has_eval=has_eval,
        memory_gb=device.memory_gb if device else None,
    )
    steps = plan.steps_from_args(records, args, config.launch.num_processes)
    memory_use = None
    if device is not None:  # the model is counted once per model config (finetune/memory.py caches it)
        memory_use = plan.memory_estimate(config, device, args, longest)
    return {
        "steps": steps.as_dict(),
        "schedule": lr_schedule(args, steps.optimizer_steps),
        "memory": memory_use,
        "duration": duration.estimate(duration.key(config, args, device), steps, mean_tokens)
        if device
        else None,
        "device": {"kind": device.kind, "name": device.name, "memory_gb": device.memory_gb}
        if device
        else None,
    }


def lr_schedule(args: Any, total: int, points: int = 200) -> list[tuple[int, float]]:
    """(step, learning rate) over the run, from transformers' own scheduler for these arguments."""
    import torch
    from transformers import get_scheduler

    if total <= 0:
        return []
    name = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if name == "reduce_lr_on_plateau":  # depends on eval loss: flat until the loss stalls
        return [(0, args.learning_rate), (total, args.learning_rate)]
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=args.learning_rate)
    try:
        scheduler = get_scheduler(
            name,
            optimizer,
            num_warmup_steps=args.get_warmup_steps(total),
            num_training_steps=total,
            scheduler_specific_kwargs=dict(args.lr_scheduler_kwargs or {}),
        )
    except (ValueError, TypeError):
        return []
    stride = max(1, total // points)
    samples = sorted({*range(0, total + 1, stride), total})
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas:
        return [(s, args.learning_rate * lambdas[0](s)) for s in samples]
    out = []
    for s in range(total + 1):  # schedulers without a closed form: step through them
        if s in samples:
            out.append((s, optimizer.param_groups[0]["lr"]))
        scheduler.step()
    return out
