"""Does it stop? (finetune/stops.py): the end-of-turn token trained by every shipped template, a template
that leaves it out caught before the run, and the figure every sft run records at its end.

    .venv/bin/pytest tests/test_stops.py -q      # ~1 min: the shared demo run and one short broken run

The broken run trains the demo with a custom template whose end-of-turn token sits outside
{% generation %}: under train_on: assistant it never carries loss, so the tuned model never learns to stop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from finetune import presets, stops, templates

LLAMA = (ROOT / "presets" / "templates" / "llama3.1.jinja").read_text(encoding="utf-8")
TRAINED_EOT = """{%- generation %}
            {{- message['content'] | trim + "<|eot_id|>" }}
        {%- endgeneration %}"""
BROKEN = LLAMA.replace(
    TRAINED_EOT,
    """{%- generation %}
            {{- message['content'] | trim }}
        {%- endgeneration %}
        {{- "<|eot_id|>" }}""",
)


@contextmanager
def watching(path: Path, seen: Callable[[dict], None]) -> Iterator[None]:
    """Read the JSON at ``path`` every 20 ms while the block runs (and once after), passing each change."""
    done, last = threading.Event(), [None]

    def look() -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return
        if text != last[0]:
            last[0] = text
            seen(json.loads(text))  # status.json is replaced atomically: never half-written

    def loop() -> None:
        while not done.wait(0.02):
            look()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        look()


@pytest.mark.parametrize("name", presets.names("templates"))
def test_every_shipped_template_trains_its_end_of_turn(name: str) -> None:
    assert templates.eot_carries_loss(templates.load(name)) is True


def test_a_template_that_leaves_the_end_of_turn_out_is_warned_about_before_the_run(tiny_llama: str) -> None:
    assert BROKEN != LLAMA
    broken = templates.load("custom", custom_source=BROKEN)
    assert templates.eot_carries_loss(broken) is None  # no eos known without a tokenizer
    plan = run_cli("plan", "presets/demo.yaml", "--template.name", "custom", "--template.custom", BROKEN)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "leaves the end-of-turn token '<|eot_id|>' outside {% generation %}" in plan.stdout


def test_the_demo_run_records_whether_it_stops(demo_run: Path) -> None:
    result = json.loads((demo_run / stops.STOPS_FILE).read_text(encoding="utf-8"))
    assert result["weights"] == "final" and result["prompts_from"] == "training"  # the demo has no split
    assert result["asked"] == result["answered"] == 32 and result["end_of_turn"] == "<|eot_id|>"
    assert len(result["answers"]) == 32 and {"prompt", "answer", "stopped", "tokens", "reference"} <= set(
        result["answers"][0]
    )
    assert result["share"] >= stops.WARN_BELOW and result["causes"] == [], stops.summary(result)
    log = (demo_run / "train.log").read_text(encoding="utf-8")
    assert f"stop check: {result['stopped']}/32 answers ended with '<|eot_id|>'" in log


def test_a_run_whose_end_of_turn_carried_no_loss_is_warned_about(tmp_path: Path, tiny_llama: str) -> None:
    run_dir = tmp_path / "broken"
    args = ["--template.name", "custom", "--template.custom", BROKEN, "--after.stop_check_prompts", "8",
            "--generation.max_new_tokens", "48", "--run-dir", str(run_dir)]  # fmt: skip
    seen = []  # what status.json says while the process checks: the page's progress line reads it
    with watching(run_dir / "status.json", lambda s: seen.append(s.get("checking"))):
        result = run_cli("train", "presets/demo.yaml", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"answered": 0, "asked": 8, "limit_s": 300.0} in seen and seen[-1] is None
    checked = stops.read(run_dir)
    assert checked["answered"] == 8 and checked["share"] < stops.WARN_BELOW, stops.summary(checked)
    assert any("outside {% generation %}" in cause for cause in checked["causes"])
    again = run_cli("check-stops", str(run_dir), "--checkpoint", "38")  # on demand, an earlier checkpoint
    assert again.returncode == 0, again.stderr[-2000:]
    assert "stop check:" in again.stdout and (run_dir / "stops-checkpoint-38.json").is_file()
