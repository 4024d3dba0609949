"""The model card (README.md) of an export: Hub metadata (base_model, datasets, library_name, tags, license)
and a body a reader can trust: the data, the template, the tokens added, every effective hyperparameter,
the final and evaluation figures, whether it stops, and the loss curve.

    (written by finetune/export.py; tested in tests/test_export.py)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune import evaluate, rundir, runs, stops

LOSS_PNG = "loss.png"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # org/name, not a local path


def metadata(config: cfg.Config, *, merged: bool) -> Any:
    """The card's YAML header (huggingface_hub's schema, so the Hub reads it)."""
    from huggingface_hub import ModelCardData

    base = config.model.name_or_path
    data = config.dataset.path
    method = "full" if config.method == "full" else config.method
    return ModelCardData(
        base_model=base if _hub_id(base) else None,
        datasets=[data] if _hub_id(data) else None,
        library_name="peft" if config.method != "full" and not merged else "transformers",
        pipeline_tag="text-classification" if config.task == "classification" else "text-generation",
        tags=["tuneboard", config.task, method, *(["merged"] if merged else [])],
        license=_license(base),
    )


def _license(base: str) -> str | None:
    """The base model's license, when its folder has a card that names one (a Hub id is not looked up)."""
    from huggingface_hub import ModelCard

    readme = Path(base) / "README.md"
    try:
        return ModelCard.load(readme).data.license if readme.is_file() else None
    except (OSError, ValueError):
        return None


def _hub_id(value: str) -> bool:
    return bool(HUB_ID.match(value)) and not Path(value).exists()


def render(run_dir: Path, config: cfg.Config, weights: Path, *, merged: bool) -> str:
    """README.md: the metadata header, then the body."""
    from huggingface_hub import ModelCard

    head = metadata(config, merged=merged).to_yaml()
    return str(ModelCard(f"---\n{head}\n---\n\n{body(run_dir, config, weights, merged=merged)}"))


def body(run_dir: Path, config: cfg.Config, weights: Path, *, merged: bool) -> str:
    sections = [
        _title(run_dir, config, weights, merged),
        _data(config),
        _format(run_dir, config),
        _results(run_dir, weights),
        _usage(config, merged),
        _hyperparameters(run_dir),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _title(run_dir: Path, config: cfg.Config, weights: Path, merged: bool) -> str:
    what = {"lora": "LoRA adapter", "qlora": "QLoRA adapter", "full": "full fine-tune"}[config.method]
    if merged:
        what += ", merged into its base"
    return (
        f"# {run_dir.name}\n\n{config.task} fine-tune of `{config.model.name_or_path}` ({what}), "
        f"trained with Tuneboard. Weights: `{weights.name}`."
    )


def _data(config: cfg.Config) -> str:
    d = config.dataset
    name = d.path if _hub_id(d.path) or d.path.startswith("builtin:") else Path(d.path).name
    return (
        f"## Data\n\n- source: `{name}`\n- max_length: {d.max_length} tokens\n"
        f"- validation split: {d.validation_split:g}"
    )


def _format(run_dir: Path, config: cfg.Config) -> str:
    pinned = rundir.pinned(run_dir)
    lines = ["## Prompt format"]
    if config.task == "sft" and pinned and pinned.template:
        lines.append(
            f"Chat template `{pinned.template.id}` (saved in this folder's tokenizer: "
            "`apply_chat_template` gives the format the model trained on); loss on "
            f"`{config.template.train_on}` tokens."
        )
        if config.template.system_prompt:
            lines.append(f"System prompt: {config.template.system_prompt!r}")
    else:
        lines.append("Plain text, no chat template." if config.task == "text" else "Text in, a label out.")
    added = list(config.tokens.add)
    lines.append(f"Tokens added: {', '.join(f'`{t}`' for t in added)}" if added else "No tokens added.")
    return "\n\n".join(lines)


def _results(run_dir: Path, weights: Path) -> str:
    lines = ["## Results\n"]
    loss = runs.last_value(run_dir / "metrics.jsonl", "loss")
    if loss is not None:
        lines.append(f"- final training loss: {loss:.4f}")
    result = evaluate.read(run_dir, weights.name)
    if result:
        where = f"on {result['records']} {result['records_from']} records"
        for name, value in evaluate.headline(result).items():
            lines.append(f"- {name.replace('_', ' ')} {where}: {value:.4f}")
        if result.get("note"):
            lines.append(f"- note: {result['note']}")
    stopped = stops.read(run_dir, weights.name)
    if stopped and stopped.get("share") is not None:
        lines.append(
            f"- answers that ended with `{stopped['end_of_turn']}`: "
            f"{stopped['stopped']}/{stopped['answered']}"
        )
    if (run_dir / "metrics.jsonl").is_file():
        lines.append(f"\n![loss curve]({LOSS_PNG})")
    return "\n".join(lines) if len(lines) > 1 else ""


def _usage(config: cfg.Config, merged: bool) -> str:
    head = "SequenceClassification" if config.task == "classification" else "CausalLM"
    adapter = config.method != "full" and not merged
    library = "peft" if adapter else "transformers"
    auto = f"AutoPeftModelFor{head}" if adapter else f"AutoModelFor{head}"
    code = f'from {library} import {auto}\nmodel = {auto}.from_pretrained("PATH")'
    return f"## Use\n\n```python\n{code}\n```"


def _hyperparameters(run_dir: Path) -> str:
    path = run_dir / rundir.EFFECTIVE
    if not path.is_file():
        return ""
    return (
        "## Every effective value\n\nEach value the run used, with where it came from (Tuneboard's "
        f"effective_config.yaml):\n\n<details>\n\n```yaml\n{path.read_text(encoding='utf-8').strip()}\n```\n\n"
        "</details>"
    )
