"""What a run directory holds that defines the run: written once, read back by every attempt, never rewritten.

    (written by finetune/jobs.py when a run is queued and finetune/train.py when it first starts; read by
    train.py, scheduler.resume and the page; tested by tests/test_rundir.py)

A run must mean the same thing forever, whatever happens to ``presets/`` or the model folder later:

    config.yaml          the config with its hyperparameter preset merged in (a comment names the preset,
                         for display; nothing refers to it)
    template.jinja       the chat template the run resolved (a preset, the model's own, or custom) ...
    template.yaml        ... and its metadata (id, system-role handling, stop tokens)
    family.yaml          the model-family preset it used (pad token, LoRA targets), or null
    launch.yaml          the accelerate config of a multi-process run (presets/launch/<strategy>.yaml)
    effective_config.yaml  every effective value with its source, as of the first start
    history.jsonl        one line per attempt (first start, each resume)

Training and resume read only these; a second attempt appends to history.jsonl and writes nothing else here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune import presets
from finetune import status as st
from finetune.config import Config, dump_yaml, load_yaml
from finetune.errors import JobError
from finetune.templates import Template

CONFIG = "config.yaml"
TEMPLATE, TEMPLATE_META, FAMILY = "template.jinja", "template.yaml", "family.yaml"
LAUNCH = "launch.yaml"  # the accelerate config of a multi-process run (a copy of presets/launch/<strategy>)
EFFECTIVE, HISTORY = "effective_config.yaml", "history.jsonl"


@dataclass(frozen=True)
class Pinned:
    """What preflight would otherwise resolve from presets/ and the model folder."""

    template: Template | None
    family: dict[str, Any] | None


def config_text(config: Config) -> str:
    """config.yaml of a run: every value the user or the preset set, with no reference back to the preset."""
    values = config.merged_dict()
    preset = values.pop("preset", None)
    head = f"# preset {preset!r} merged in below; this file alone defines the run\n" if preset else ""
    return head + dump_yaml(values)


def pinned(run_dir: Path) -> Pinned | None:
    """The template and family a run resolved when it first started (None before that)."""
    if not (run_dir / FAMILY).is_file():
        return None
    family = load_yaml((run_dir / FAMILY).read_text(encoding="utf-8"))
    template = None
    if (run_dir / TEMPLATE_META).is_file():
        meta = load_yaml((run_dir / TEMPLATE_META).read_text(encoding="utf-8"))
        source = (run_dir / TEMPLATE).read_text(encoding="utf-8")
        template = Template(meta["id"], source, meta)
    return Pinned(template, family)


def first_effective(run_dir: Path) -> dict[str, Any]:
    """effective_config.yaml as the run's first attempt wrote it ({} before that)."""
    path = run_dir / EFFECTIVE
    return (load_yaml(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def definition_files(config: Config, template: Template | None, family: dict | None) -> dict[str, str]:
    """The files that define a run, by name (effective_config.yaml is train.py's: it needs the device)."""
    files = {CONFIG: config_text(config), FAMILY: dump_yaml(family)}
    if config.launch.distributed:
        strategy = config.launch.strategy
        files[LAUNCH] = (presets.PRESETS_DIR / "launch" / f"{strategy}.yaml").read_text(encoding="utf-8")
    if template is not None:
        files[TEMPLATE] = template.source
        files[TEMPLATE_META] = dump_yaml(template.meta | {"id": template.id})
    return files


def write_new(run_dir: Path, files: dict[str, str]) -> None:
    """Write the files a run directory does not hold yet; the ones it holds are never replaced.

    A config.yaml that says something else than ``files`` does means another run lives here: refused.
    """
    held = run_dir / CONFIG
    if held.is_file() and CONFIG in files and not same_config(held.read_text("utf-8"), files[CONFIG]):
        raise JobError(
            f"{run_dir} already holds a run with another config: pick a new --run-dir, or resume it with "
            f"python -m finetune train {held} --resume (and no overrides)"
        )
    for name, text in files.items():
        if not (run_dir / name).exists():
            st.write_text_atomic(run_dir / name, text)


def same_config(a: str, b: str) -> bool:
    return (load_yaml(a) or {}) == (load_yaml(b) or {})


def record_attempt(run_dir: Path, **fields: Any) -> None:
    """One line in history.jsonl per attempt: when, which attempt, from which checkpoint."""
    line = json.dumps({"at": st.now_iso(), **fields}, ensure_ascii=False)
    with open(run_dir / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
