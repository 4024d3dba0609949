"""presets/launch/schedulers/: the SLURM and SkyPilot files that run a config on N machines.

    .venv/bin/pytest tests/test_schedulers.py -q

No cluster here: each file's script runs under bash with the scheduler's own commands (srun, scontrol,
nvidia-smi) replaced by stubs that write down what they were asked, and the test reads the command every node
would run. SkyPilot's own schema checks the task file where the `sky` package is installed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEDULERS = ROOT / "presets" / "launch" / "schedulers"


def stubs(folder: Path, **scripts: str) -> dict[str, str]:
    """A PATH where each named command is the given shell script."""
    folder.mkdir()
    for name, body in scripts.items():
        (folder / name).write_text("#!/bin/sh\n" + body + "\n")
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def node_command(asked: Path) -> list[str]:
    """The `python -m accelerate.commands.launch ...` a node runs, from what a stub wrote down."""
    words = shlex.split(asked.read_text())
    return words[words.index("-m") - 1 :]  # from the python that runs the launcher


def test_slurm_runs_one_launcher_per_node_with_a_process_per_gpu(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    env = os.environ | {"TUNEBOARD_HOME": str(home), "SLURM_NNODES": "2", "SLURM_GPUS_ON_NODE": "8"}
    env |= {"SLURM_JOB_NODELIST": "gpu[01-02]"}
    env |= stubs(
        tmp_path / "bin",
        scontrol='printf "gpu01\\ngpu02\\n"',
        # srun runs `bash -c CMD` once per node: print CMD as node 1 would run it.
        srun=f'shift; [ "$1" = bash ] && SLURM_NODEID=1 sh -c "echo $3" > {tmp_path}/asked',
    )
    script = SCHEDULERS / "slurm.sbatch"
    result = subprocess.run(
        ["bash", str(script), "cfg.yaml", "my-run"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    cmd = node_command(tmp_path / "asked")
    assert cmd[:3] == [".venv/bin/python", "-m", "accelerate.commands.launch"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--config_file"] == "presets/launch/ddp.yaml"
    assert flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"  # each node its own rank
    assert flags["--num_processes"] == "16" and flags["--main_process_ip"] == "gpu01"
    tail = cmd[cmd.index("finetune") - 1 :]
    assert tail == ["-m", "finetune", "train", "cfg.yaml", "--run-dir", f"{home}/runs/my-run"]
    text = script.read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "TUNEBOARD_LAUNCHER=slurm" in text
    (home / "runs" / "my-run" / "status.json").write_text("{}")  # a second sbatch of the same run resumes
    subprocess.run(["bash", str(script), "cfg.yaml", "my-run"], env=env, check=True)
    assert node_command(tmp_path / "asked")[-1] == "--resume"


def test_skypilot_runs_the_same_launcher_on_every_node(tmp_path: Path) -> None:
    task = yaml.safe_load((SCHEDULERS / "skypilot.yaml").read_text())
    assert task["num_nodes"] >= 2 and task["envs"]["TUNEBOARD_LAUNCHER"] == "skypilot"
    assert task["file_mounts"][task["envs"]["TUNEBOARD_HOME"]]["mode"] == "MOUNT"  # the run dir, shared
    env = os.environ | {k: str(v) for k, v in task["envs"].items()} | {"TUNEBOARD_HOME": str(tmp_path)}
    env |= {"SKYPILOT_NODE_IPS": "10.0.0.4\n10.0.0.5", "SKYPILOT_NUM_NODES": "2", "SKYPILOT_NODE_RANK": "1"}
    env |= {"SKYPILOT_NUM_GPUS_PER_NODE": "8", "RUN_NAME": "sky-run"}
    (tmp_path / "runs" / "sky-run").mkdir(parents=True)
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\necho "$0 $*" > {tmp_path}/asked\n')
    (venv / "python").chmod(0o755)
    subprocess.run(["bash", "-c", task["run"]], cwd=tmp_path, env=env, check=True, capture_output=True)
    cmd = node_command(tmp_path / "asked")
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert flags["--num_machines"] == "2" and flags["--machine_rank"] == "1"
    assert flags["--num_processes"] == "16" and flags["--main_process_ip"] == "10.0.0.4"
    tail = cmd[cmd.index("finetune") - 1 :]
    assert tail == ["-m", "finetune", "train", "config.yaml", "--run-dir", f"{tmp_path}/runs/sky-run"]


def test_skypilot_accepts_the_task_file() -> None:
    sky = pytest.importorskip("sky", reason="SkyPilot is not installed here (it was checked with 0.14.1)")
    from sky.utils import common_utils, schemas

    task = yaml.safe_load((SCHEDULERS / "skypilot.yaml").read_text())
    common_utils.validate_schema(task, schemas.get_task_schema(), "Invalid task YAML: ")
    assert sky.__version__


def test_the_page_leaves_a_cluster_run_to_report_its_own_end(tmp_path: Path, monkeypatch) -> None:
    """Its processes run on other machines: no pid here means nothing, and it takes none of this machine's
    slots."""
    from finetune import jobs, scheduler
    from finetune import status as st

    monkeypatch.setenv("TUNEBOARD_SLOTS", "cpu")
    run_dir = tmp_path / "runs" / "cluster-run"
    run_dir.mkdir(parents=True)
    st.update(run_dir, state=st.RUNNING, launcher="slurm", host="gpu01", pid=2**22 + 1, boot_id="elsewhere")
    assert jobs.reconcile(run_dir)["state"] == "running"
    assert scheduler._busy(tmp_path / "runs") == []
