"""finetune/rundir.py: a run directory means the same thing forever.

    .venv/bin/pytest tests/test_rundir.py -q

The run trains for real (the CLI in a subprocess, as the supervisor starts it), is stopped with a checkpoint,
then its hyperparameter preset and its model's own chat template are edited on disk before it resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from test_jobs import wait_for

from finetune import config, jobs, presets, rundir, runs
from finetune.errors import JobError

PRESET = """name: airtight test
description: a preset this test edits while its run is stopped
values:
  training:
    max_steps: {max_steps}
    learning_rate: {lr}
    lr_scheduler_type: constant
"""
DEFINITION = ("config.yaml", "template.jinja", "template.yaml", "family.yaml", "effective_config.yaml")


@pytest.fixture
def preset() -> Path:
    """A hyperparameter preset of this test's own in presets/hparams/ (removed afterwards)."""
    path = presets.PRESETS_DIR / "hparams" / f"test-airtight-{os.getpid()}.yaml"
    path.write_text(PRESET.format(max_steps=24, lr="2.0e-3"), encoding="utf-8")
    yield path
    path.unlink(missing_ok=True)


def stopped_after_a_checkpoint(run_dir: Path) -> None:
    """Start the queued run as the supervisor does, and Stop it once it has written a checkpoint."""
    jobs.launch(run_dir, "cpu")
    wait_for(lambda: (run_dir / "checkpoint-2" / "trainer_state.json").is_file(), timeout=180)
    status = jobs.stop(run_dir, wait=120)  # SIGTERM: the trainer ends the step and saves a checkpoint
    assert status["state"] == "stopped", status


def test_a_resumed_run_keeps_its_values_and_template_byte_for_byte(
    tmp_path: Path, tiny_llama: str, preset: Path
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_llama, model_dir)
    original_template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    user = {
        "preset": preset.stem,
        "model": {"name_or_path": str(model_dir)},
        "template": {"name": "model"},
        "dataset": {"max_records": 80, "max_length": 256},
        "training": {"per_device_train_batch_size": 2, "logging_steps": 1, "save_strategy": "steps"},
    }
    user["training"]["save_steps"] = 2
    run_dir = jobs.create(config.from_dict(user), tmp_path / "runs")
    stopped_after_a_checkpoint(run_dir)
    before = {name: (run_dir / name).read_bytes() for name in DEFINITION}
    assert (run_dir / "template.jinja").read_text(encoding="utf-8") == original_template
    assert "preset" not in config.load_yaml(before["config.yaml"].decode())  # merged, not referenced
    assert config.load_yaml(before["config.yaml"].decode())["training"]["max_steps"] == 24

    # Both sources of this run's meaning change on disk while it is stopped.
    preset.write_text(PRESET.format(max_steps=3, lr="0.5"), encoding="utf-8")
    (model_dir / "chat_template.jinja").write_text("{{ 'edited' }}", encoding="utf-8")
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_config["chat_template"] = "{{ 'edited' }}"
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tok_config), encoding="utf-8")

    result = run_cli("train", str(run_dir / "config.yaml"), "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {name: (run_dir / name).read_bytes() for name in DEFINITION} == before  # nothing rewritten
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["attempt"] == 2
    assert status["step"] == status["max_steps"] == 24  # the stored preset value, not the edited 3
    rates = {row["learning_rate"] for row in runs.read_metrics(run_dir) if "learning_rate" in row}
    assert rates == {2e-3}  # constant at the stored rate, before and after the resume
    trained_with = json.loads((run_dir / "final" / "tokenizer_config.json").read_text(encoding="utf-8"))
    saved = trained_with.get("chat_template") or (run_dir / "final/chat_template.jinja").read_text("utf-8")
    assert saved == original_template
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [(h["attempt"], h["resume"]) for h in history] == [(1, False), (2, True)]
    assert history[1]["checkpoint"].startswith("checkpoint-")


def test_a_run_directory_refuses_another_config(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = config.from_dict({"training": {"max_steps": 2}})
    rundir.write_new(run_dir, {rundir.CONFIG: rundir.config_text(first)})
    rundir.write_new(run_dir, {rundir.CONFIG: rundir.config_text(first)})  # the same run again: fine
    other = config.from_dict({"training": {"max_steps": 3}})
    with pytest.raises(JobError, match="already holds a run with another config"):
        rundir.write_new(run_dir, {rundir.CONFIG: rundir.config_text(other)})
    result = run_cli("train", str(run_dir / "config.yaml"), "--resume", "--training.max_steps", "5")
    assert result.returncode == 2 and "already holds a run with another config" in result.stderr


def test_the_stored_config_names_its_preset_only_in_a_comment() -> None:
    text = rundir.config_text(config.from_dict({"preset": "smoke", "training": {"seed": 7}}))
    assert text.startswith("# preset 'smoke' merged in")
    values = config.load_yaml(text)
    assert "preset" not in values and values["training"]["seed"] == 7
    assert values["training"]["max_steps"] == 20 and values["lora"]["r"] == 8  # the preset's values, copied
