"""Everything that can be checked before a run directory exists: tokenizer, tokens, template, data.

    python -m finetune plan presets/demo.yaml      # runs this and prints what it found

``plan`` and ``train`` both start here, so a bad config fails at ``plan`` (or at Start in the page) with the
field path and a fix, never half-way through a run. Loads a tokenizer, never model weights.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass, field
from typing import Any

from finetune import data, model, rundir, templates, tokens
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
    ds = checked.dataset.train
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
    sample = checked.dataset.train[0]["messages"] if len(checked.dataset.train) else None
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
    ds = checked.dataset.train
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
        content = str(message.get("content") or "")
        cut, _ = clip_text(content, budget)
        out.append({**message, "content": cut})
        full, kept = full + len(content), kept + len(cut)
    return out, (full / kept if kept and full > kept else 1.0)


def record_lengths(checked: Checked, limit: int = 2000) -> list[int]:
    """Token length of the first ``limit`` training records after templating.

    Bounded work: each text is cut to :func:`char_budget` characters first (a 50 MB record would take
    gigabytes to tokenize); a cut record's length is extrapolated from its start, so it counts as longer than
    max_length, as it is.
    """
    ds = checked.dataset.train.select(range(min(limit, len(checked.dataset.train))))
    tok, budget = checked.tokenizer, char_budget(checked.config.dataset.max_length)
    if checked.config.task == "sft":
        clipped = [clip_messages(r["messages"], budget) for r in ds]
        encoded = templates.encode(tok, checked.template, [c for c, _ in clipped], assistant_only=False)
        lengths = [len(e.ids) for e in encoded]
    else:
        clipped = [clip_text(r["text"], budget) for r in ds]
        lengths = [len(ids) + 1 for ids in tok([c for c, _ in clipped])["input_ids"]] if clipped else []
    return [round(n * scale) for n, (_, scale) in zip(lengths, clipped, strict=True)]
