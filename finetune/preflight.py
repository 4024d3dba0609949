"""Everything that can be checked before a run directory exists: tokenizer, tokens, template, data.

    python -m finetune plan presets/demo.yaml      # runs this and prints what it found

``plan`` and ``train`` both start here, so a bad config fails at ``plan`` (or at Start in the page) with the
field path and a fix, never half-way through a run. Loads a tokenizer, never model weights.
"""

from __future__ import annotations

import copy
import importlib.util
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from finetune import data, model, rundir, speed, templates, tokens
from finetune.config import Config, LaunchConfig
from finetune.errors import PreflightError


@dataclass
class Checked:
    config: Config
    tokenizer: Any  # with tokens added and the chat template set
    tokenizer_before: Any  # as loaded, for before/after comparisons
    model_type: str | None
    family: dict[str, Any] | None
    template: templates.Template | None
    token_changes: tokens.TokenChanges
    dataset: data.Prepared
    warnings: list[str] = field(default_factory=list)


TRUST_REMOTE_CODE_WARNING = (
    "model.trust_remote_code is on: Python code shipped with the model runs inside the training process, "
    "with your files and HF_TOKEN; keep it on only for models whose authors you trust"
)


def run(config: Config, sample: int | None = None, pinned: rundir.Pinned | None = None) -> Checked:
    """All checks, in the order a user would fix them; the first failure raises its TuneboardError.

    ``sample``: keep only the first N records of the dataset (data.prepare), for what shows a plan or a
    preview of a file of any size; training keeps them all. ``pinned``: the template and model family a run
    directory stored when it first started (resolved from presets/ and the model folder otherwise).
    """
    if config.method == "qlora":  # refuse a CPU or a missing bitsandbytes here, not after RUN_DIR exists
        model.quantization_config(model.detect_device())
    if config.model.liger_kernel:
        speed.check_liger(model.detect_device())
    if config.launch.distributed:
        check_launch(config.launch, model.detect_device())
    model_config = model.load_config(config.model)
    model_type = getattr(model_config, "model_type", None)
    fam = pinned.family if pinned else model.family(config.model, model_type)
    tokenizer = model.load_tokenizer(config.model)
    before = copy.deepcopy(tokenizer)
    changes = tokens.apply(tokenizer, config.tokens, (fam or {}).get("pad_token"))
    prepared = data.prepare(
        config.dataset,
        config.task,
        system_prompt=config.template.system_prompt,
        seed=config.training.seed or 42,
        sample=sample,
    )
    checked = Checked(
        config, tokenizer, before, model_type, fam, None, changes, prepared, list(prepared.warnings)
    )
    if config.model.trust_remote_code:
        checked.warnings.insert(0, TRUST_REMOTE_CODE_WARNING)
    if config.task == "sft":
        checked.template = pinned.template if pinned else choose_template(config, tokenizer, fam)
        tokenizer.chat_template = checked.template.source
        _check_template(checked)
    checked.warnings += [
        f"tokens.add: {token!r} appears in none of the first {UNUSED_SCAN:,} records (nor in the template), "
        "so its new embedding row would learn nothing; remove it, or check that this is the right data"
        for token in unused_tokens(checked)
    ]
    return checked


def check_launch(launch: LaunchConfig, device: model.Device) -> None:
    """What a multi-process run needs of this machine, refused before its processes start."""
    if launch.strategy != "ddp" and device.kind != "cuda":
        raise PreflightError(
            "launch.strategy",
            f"{launch.strategy} splits the model across GPUs and needs CUDA; use ddp on a CPU machine",
        )
    if launch.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise PreflightError(
            "launch.strategy", "needs the deepspeed package (pip install deepspeed), or use fsdp"
        )
    here = -(-launch.num_processes // launch.num_machines)
    if device.kind == "cuda" and here > device.count:
        raise PreflightError(
            "launch.num_processes",
            f"{here} processes on this machine but {device.count} GPU(s) visible: one process per GPU; lower "
            "launch.num_processes or make more GPUs visible (CUDA_VISIBLE_DEVICES)",
        )


UNUSED_SCAN = 5000  # records searched for each new token (plan.SAMPLE: what a preview keeps)


def unused_tokens(checked: Checked) -> list[str]:
    """The tokens of tokens.add that the first UNUSED_SCAN records never contain and the template never
    writes (a template's own markers, such as <|im_start|>, are used even when no record holds them)."""
    source = checked.template.source if checked.template else ""
    left = [t for t in checked.config.tokens.add if t not in source]
    ds = checked.dataset.first
    budget = char_budget(checked.config.dataset.max_length)
    for record in ds.select(range(min(UNUSED_SCAN, len(ds)))) if left else ():
        if "messages" in record:
            text = "\n".join(str(m.get("content") or "")[:budget] for m in record["messages"])
        else:
            text = str(record.get("text") or "")[:budget]
        left = [t for t in left if t not in text]
        if not left:
            break
    return left


def choose_template(config: Config, tokenizer: Any, fam: dict[str, Any] | None) -> templates.Template:
    name = config.template.name
    if name == "auto":
        if fam and fam.get("template"):
            name = fam["template"]
        elif getattr(tokenizer, "chat_template", None):
            name = "model"
        else:
            raise templates.TemplateError(
                "template 'auto': the model has no chat template and no known family; pick a preset "
                f"({', '.join(templates.list_templates())})"
            )
    return templates.load(name, tokenizer=tokenizer, custom_source=config.template.custom)


def _check_template(checked: Checked) -> None:
    config, tokenizer, template = checked.config, checked.tokenizer, checked.template
    sample = checked.dataset.first[0]["messages"] if len(checked.dataset.first) else None
    family_template = checked.family.get("template") if checked.family else None
    checked.warnings += templates.check(template, tokenizer, sample, model_family_template=family_template)
    if config.template.train_on == "assistant" and not templates.has_generation_markers(template.source):
        raise templates.TemplateError(
            f"template {template.id!r} has no {{% generation %}} markers, so loss cannot be limited to "
            "assistant turns; set template.train_on: all, or pick a preset template"
        )
    if config.template.train_on == "assistant" and templates.eot_carries_loss(template, tokenizer) is False:
        checked.warnings.append(eot_warning(template, tokenizer))
    _check_overhead(checked)
    _check_records(checked)


def eot_warning(template: templates.Template, tokenizer: Any) -> str:
    eot = templates.end_of_turn(template, tokenizer)
    return (
        f"template {template.id!r} leaves the end-of-turn token {eot!r} outside {{% generation %}}, so under "
        "train_on: assistant it carries no loss and the tuned model may never learn to stop; put it inside "
        "the generation block, or pick a preset template (each trains it)"
    )


def _check_records(checked: Checked, limit: int = 2000) -> None:
    """The records must render: a template that raises on one (gemma2 and a system message after the first
    turn) would otherwise stop the run inside the trainer. The records record_lengths measures, cut alike."""
    budget = char_budget(checked.config.dataset.max_length)
    ds = checked.dataset.first
    records = [clip_messages(r["messages"], budget)[0] for r in ds.select(range(min(limit, len(ds))))]
    specials = templates.special_tokens(checked.tokenizer)
    try:
        templates.render_many(checked.template, records, specials)
    except templates.TemplateError as exc:
        if exc.index is None:
            raise
        roles = ", ".join(str(m.get("role")) for m in records[exc.index])
        raise templates.TemplateError(
            f"{exc} (in a record with the roles {roles}); fix those records or pick a template that "
            "accepts them"
        ) from None


def _check_overhead(checked: Checked) -> None:
    """max_length must leave room for the template's own tokens plus a little content."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    (encoded,) = templates.encode(checked.tokenizer, checked.template, [probe], assistant_only=False)
    n = len(encoded.ids)
    max_length = checked.config.dataset.max_length
    if n + 8 > max_length:
        raise PreflightError(
            "dataset.max_length",
            f"{max_length} is too short: the template {checked.template.id!r} alone takes {n - 2} tokens "
            f"for a one-turn conversation; use at least {n + 64}",
        )


# Characters per token in real text stay far below this (English ~4, Japanese ~1.5, code ~3): text beyond
# CHARS_PER_TOKEN x max_length characters cannot fit in a record, so it is never tokenized for a preview.
CHARS_PER_TOKEN = 8


def char_budget(max_length: int) -> int:
    """The characters of a record (per message) worth tokenizing to measure or show it."""
    return CHARS_PER_TOKEN * (max_length + 1)


def clip_text(text: str, budget: int) -> tuple[str, float]:
    """``text`` cut to ``budget`` characters, and how many times longer the whole is (1.0: not cut)."""
    text = text or ""
    return (text, 1.0) if len(text) <= budget else (text[:budget], len(text) / budget)


def clip_messages(messages: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], float]:
    """Each message's content cut to ``budget`` characters, and how many times longer the whole is."""
    out, full, kept = [], 0, 0
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else str(content or "")
        cut = text[:budget]
        out.append(message if cut is content else {**message, "content": cut})  # a whole text: no copy
        full, kept = full + len(text), kept + len(cut)
    return out, (full / kept if kept and full > kept else 1.0)


# Records whose lengths are measured at once (the page; plan beyond plan.EVERY_RECORD_TOKENS). all_lengths
# measures every record in chunks of LENGTH_CHUNK records and LENGTH_CHUNK_CHARS characters at most (one
# sandbox child and one tokenizer call each), LENGTH_WORKERS at a time: a chunk tokenizes (the tokenizer lets
# go of the GIL) while the next renders in its child and the one after is read.
LENGTH_SAMPLE = 2000
LENGTH_CHUNK = 4000
LENGTH_CHUNK_CHARS = templates.BATCH_CHARS
LENGTH_WORKERS = 2


def record_lengths(checked: Checked, limit: int = LENGTH_SAMPLE) -> list[int]:
    """Token length of the first ``limit`` training records after templating (:func:`measure`)."""
    ds = checked.dataset.first
    return measure(checked, clipped(checked, ds.select(range(min(limit, len(ds)))).to_list()))


def clipped(checked: Checked, records: list[dict[str, Any]]) -> list[tuple[Any, float]]:
    """Each record's conversation (or text) with every text cut to :func:`char_budget` characters, and how
    many times longer the whole is. Bounded work: a 50 MB record would take gigabytes to tokenize."""
    budget = char_budget(checked.config.dataset.max_length)
    if checked.config.task == "sft":
        return [clip_messages(r["messages"], budget) for r in records]
    return [clip_text(r["text"], budget) for r in records]


def measure(checked: Checked, records: list[tuple[Any, float]]) -> list[int]:
    """Token length of each :func:`clipped` record after templating: the ids the trainer reads before it
    truncates to max_length (templates.lengths; task text and classification: the text and its end-of-text
    token). A cut record's length is extrapolated from its start, so it counts as longer than max_length, as
    it is."""
    tok, items = checked.tokenizer, [item for item, _ in records]
    if checked.config.task == "sft":
        lengths = templates.lengths(tok, checked.template, items, batch=max(len(items), 1))
    else:
        lengths = [n + 1 for n in templates.token_counts(tok, items, add_special_tokens=True)]
    return [round(n * scale) for n, (_, scale) in zip(lengths, records, strict=True)]


def all_lengths(
    checked: Checked, progress: Callable[[int, int], None] | None = None, known: list[int] | None = None
) -> list[int]:
    """The token length of every usable record of the dataset, in order, not only of the first ones
    ``checked`` keeps, as :func:`record_lengths` measures them. The data is read and converted again
    (data.records), and cut and measured a chunk at a time, so memory holds the lengths and a few chunks.
    ``progress(rows read, rows in all)`` after each chunk; ``known``: the first records' lengths, measured
    already (record_lengths). 100,000 chat records: bench/RESULTS.md."""
    ds, known = checked.dataset, known or []
    if len(ds.first) >= ds.n_records:  # every record is in memory already
        return record_lengths(checked, ds.n_records)
    cfg = checked.config
    batches = data.records(cfg.dataset, cfg.task, system_prompt=cfg.template.system_prompt)
    out: list[int] = []
    pending: deque[tuple[int, int, int, Future[list[int]]]] = deque()  # (first record, read, total, lengths)
    with ThreadPoolExecutor(LENGTH_WORKERS, thread_name_prefix="tuneboard-lengths") as pool:
        for first, read, total, chunk in _length_chunks(checked, batches):
            done = known[first : first + len(chunk)]
            pending.append((first, read, total, pool.submit(_measure_rest, checked, chunk, done)))
            while len(pending) > LENGTH_WORKERS:  # the next chunk is read while these run, no more held
                out += _chunk_lengths(*pending.popleft(), progress)
        while pending:
            out += _chunk_lengths(*pending.popleft(), progress)
    return out


def _measure_rest(checked: Checked, chunk: list[tuple[Any, float]], done: list[int]) -> list[int]:
    """The lengths of a chunk whose first ones are ``done``."""
    return done + measure(checked, chunk[len(done) :]) if len(done) < len(chunk) else done


def _length_chunks(checked: Checked, batches: Any) -> Any:
    """(index of the first record, rows read, rows in all, clipped records) in chunks of LENGTH_CHUNK records
    and LENGTH_CHUNK_CHARS characters at most, from data.records' batches."""
    first, chunk, chars, read, total = 0, [], 0, 0, 0
    for read, total, records in batches:
        for record in clipped(checked, records):
            item = record[0]
            chunk.append(record)
            chars += len(item) if isinstance(item, str) else sum(len(m["content"]) for m in item)
            if len(chunk) >= LENGTH_CHUNK or chars >= LENGTH_CHUNK_CHARS:
                yield first, read, total, chunk
                first, chunk, chars = first + len(chunk), [], 0
    if chunk:
        yield first, read, total, chunk


def _chunk_lengths(
    first: int, read: int, total: int, lengths: Future[list[int]], progress: Callable[[int, int], None] | None
) -> list[int]:
    """A chunk's lengths once measured; a record its template cannot render is named by its place in the
    data (the trainer would stop on it)."""
    try:
        done = lengths.result()
    except templates.TemplateError as exc:
        if exc.index is None:
            raise
        raise templates.TemplateError(
            f"{exc.message} (record {first + exc.index + 1:,} of the usable ones); fix it or pick a template "
            "that accepts it",
            first + exc.index,
        ) from None
    if progress is not None:
        progress(read, total)
    return done
