"""The README's Hugging Face Space settings: the front matter a Space reads before it builds.

.venv/bin/pytest tests/test_space.py -q
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Space's YAML front matter"
    return yaml.safe_load(match.group(1))


def test_the_space_runs_the_app_on_the_versions_the_suite_tests() -> None:
    space = front_matter()
    assert space["sdk"] == "gradio" and (ROOT / space["app_file"]).is_file()
    pinned = re.search(r"^gradio(?:\[[^\]]*\])?==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert str(space["sdk_version"]) == pinned.group(1)  # the Space installs that gradio, not its default
    assert str(space["python_version"]) == f"{sys.version_info.major}.{sys.version_info.minor}"  # not 3.10


def test_the_space_asks_for_a_gpu_and_signs_in_with_hugging_face() -> None:
    space = front_matter()
    assert not str(space["suggested_hardware"]).startswith("cpu")  # training wants a GPU
    assert space["hf_oauth"] is True  # the login: Hugging Face OAuth, limited by TUNEBOARD_HF_USERS
