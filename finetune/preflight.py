"""Everything that can be checked before a run directory exists: tokenizer, tokens, template, data.

    python -m finetune plan presets/demo.yaml      # runs this and prints what it found

``plan`` and ``train`` both start here, so a bad config fails at ``plan`` (or at Start in the page) with the
field path and a fix, never half-way through a run. Loads a tokenizer, never model weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from finetune import data, model, templates, tokens
from finetune.config import Config


class PreflightError(ValueError):
    """Wraps the engine's own errors so callers catch one type; ``field`` is the config path."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


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


def run(config: Config) -> Checked:
    """All checks, in the order a user would fix them; the first failure raises PreflightError."""
    try:
        return _run(config)
    except (data.DataError, model.ModelError, tokens.TokenError) as exc:
        raise PreflightError(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from None
    except templates.TemplateError as exc:
        raise PreflightError("template.name", str(exc)) from None


def _run(config: Config) -> Checked:
    if config.method == "qlora":  # refuse a CPU or a missing bitsandbytes here, not after RUN_DIR exists
        model.quantization_config(model.detect_device())
    model_config = model.load_config(config.model)
    model_type = getattr(model_config, "model_type", None)
    fam = model.family(config.model, model_type)
    tokenizer = model.load_tokenizer(config.model)
    before = copy.deepcopy(tokenizer)
    changes = tokens.apply(tokenizer, config.tokens, (fam or {}).get("pad_token"))
    prepared = data.prepare(
        config.dataset,
        config.task,
        system_prompt=config.template.system_prompt,
        seed=config.training.seed or 42,
    )
    checked = Checked(
        config, tokenizer, before, model_type, fam, None, changes, prepared, list(prepared.warnings)
    )
    if config.model.trust_remote_code:
        checked.warnings.insert(0, TRUST_REMOTE_CODE_WARNING)
    if config.task == "sft":
        checked.template = choose_template(config, tokenizer, fam)
        tokenizer.chat_template = checked.template.source
        _check_template(checked)
    return checked


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
    _check_overhead(checked)
    _check_records(checked)


def _check_records(checked: Checked, limit: int = 2000) -> None:
    """The records must render: a template that raises on one (gemma2 and a system message after the first
    turn) would otherwise stop the run inside the trainer with a traceback. Same limit as record_lengths."""
    tok, ds = checked.tokenizer, checked.dataset.train
    specials = {key: value for key, value in tok.special_tokens_map.items() if isinstance(value, str)}
    for record in ds.select(range(min(limit, len(ds)))):
        try:
            templates.render(checked.template, record["messages"], **specials)
        except templates.TemplateError as exc:
            roles = ", ".join(str(m.get("role")) for m in record["messages"])
            raise templates.TemplateError(
                f"{exc} (in a record with the roles {roles}); fix those records or pick a template that "
                "accepts them"
            ) from None


def _check_overhead(checked: Checked) -> None:
    """max_length must leave room for the template's own tokens plus a little content."""
    probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    ids = checked.tokenizer.apply_chat_template(probe, tokenize=True, return_dict=True)["input_ids"]
    max_length = checked.config.dataset.max_length
    if len(ids) + 8 > max_length:
        raise PreflightError(
            "dataset.max_length",
            f"{max_length} is too short: the template {checked.template.id!r} alone takes "
            f"{len(ids) - 2} tokens "
            f"for a one-turn conversation; use at least {len(ids) + 64}",
        )


def record_lengths(checked: Checked, limit: int = 2000) -> list[int]:
    """Token length of each training record after templating (the first ``limit`` records)."""
    ds = checked.dataset.train.select(range(min(limit, len(checked.dataset.train))))
    tok = checked.tokenizer
    if checked.config.task == "sft":
        return [
            len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
            for r in ds
        ]
    return [len(tok(r["text"])["input_ids"]) + 1 for r in ds]
