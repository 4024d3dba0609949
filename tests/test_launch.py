"""A run of several processes through `accelerate launch`: a real 2-process data-parallel run on the CPU.

    .venv/bin/pytest tests/test_launch.py -q      # ~1 min on 2 cores

The job is started as the supervisor starts it (jobs.launch): `python -m accelerate.commands.launch
--config_file RUN_DIR/launch.yaml --num_processes 2 ... -m finetune train ...`, the processes meeting on gloo.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_jobs import demo, ended, wait_for

from finetune import jobs, rundir, runs


def left_over(run_dir: Path) -> list[str]:
    """The live processes of the run (the launcher and every rank name its run directory; a zombie
    awaiting its parent does not count)."""
    found = []
    for proc in (p for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and str(run_dir) in argv:
            found.append(f"{proc.name}: {argv[:160]}")
    return found


def test_two_processes_train_one_run(tmp_path: Path, tiny_llama: str) -> None:
    overrides = {
        "launch.num_processes": 2,
        "launch.main_process_port": 29517,
        "training.max_steps": 8,
        "training.per_device_train_batch_size": 4,
        "training.micro_batch_tokens": 64,  # each batch in passes: all but the last skip DDP's gradient sync
        "training.logging_steps": 1,
        "training.save_strategy": "no",
    }
    run_dir = jobs.create(demo(**overrides), tmp_path / "runs")
    argv = jobs.command(run_dir)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and "--num_processes" in argv
    assert (run_dir / rundir.LAUNCH).is_file()  # the accelerate config travels with the run
    jobs.launch(run_dir, "cpu")
    status = wait_for(lambda: ended(run_dir), timeout=300)
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert status["state"] == "finished", (status, log[-3000:])
    assert status["world_size"] == 2
    assert "rank 0 of 2: 8 steps" in log and "rank 1 of 2: 8 steps" in log  # both ranks stepped
    steps = [row["step"] for row in runs.read_metrics(run_dir) if "loss" in row]
    assert steps == list(range(1, 9))  # rank 0 alone writes the metrics: each step once
    final = run_dir / "final"
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    assert json.loads((final / "trainer_state.json").read_text())["global_step"] == 8
    assert "Traceback" not in log
    wait_for(lambda: not left_over(run_dir), timeout=60)  # no rank left hanging at exit


def test_stop_reaches_every_rank_with_one_checkpoint(tmp_path: Path, tiny_llama: str) -> None:
    overrides = {
        "launch.num_processes": 2,
        "launch.main_process_port": 29518,
        "training.max_steps": 400,
        "training.per_device_train_batch_size": 2,
        "training.save_strategy": "steps",
        "training.save_steps": 5,
    }
    run_dir = jobs.create(demo(**overrides), tmp_path / "runs")
    jobs.launch(run_dir, "cpu")
    wait_for(lambda: (run_dir / "checkpoint-5" / "trainer_state.json").is_file(), timeout=300)
    status = jobs.stop(run_dir, wait=120)  # SIGTERM to the launcher's process group: every rank gets it
    log = (run_dir / "train.log").read_text(encoding="utf-8")
    assert status["state"] == "stopped" and status["checkpoint"], (status, log[-3000:])
    assert status["step"] < 400 and "Traceback" not in log
    stopped_at = int(status["checkpoint"].split("-")[1])
    assert stopped_at == status["step"]  # both ranks stopped at the same step: one checkpoint of it
    wait_for(lambda: not left_over(run_dir), timeout=60)


def test_what_this_machine_cannot_launch_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import pytest

    from finetune import errors, model, preflight
    from finetune.config import LaunchConfig

    cpu, two_gpus = model.Device("cpu", "CPU", False, None), model.Device("cuda", "H100", True, 80.0, 2)
    with pytest.raises(errors.PreflightError, match="needs CUDA; use ddp"):
        preflight.check_launch(LaunchConfig(num_processes=2, strategy="fsdp"), cpu)
    with pytest.raises(errors.PreflightError, match="4 processes on this machine but 2 GPU"):
        preflight.check_launch(LaunchConfig(num_processes=4), two_gpus)
    preflight.check_launch(
        LaunchConfig(num_processes=4, num_machines=2, main_process_ip="10.0.0.4"), two_gpus
    )
    with pytest.raises(errors.ConfigError) as info:
        demo(**{"launch.num_machines": 2, "launch.num_processes": 2})
    assert info.value.field == "launch.main_process_ip"
    with pytest.raises(errors.ConfigError) as info:
        demo(**{"launch.num_processes": 0})
    assert info.value.field == "launch.num_processes"
    assert not (tmp_path / "runs").exists()
