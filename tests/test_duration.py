"""finetune/duration.py: a run's duration estimated before Start, from a speed measured on this machine by
a finished run or a calibration.

    .venv/bin/pytest tests/test_duration.py -q

How close the estimate comes to the truth is measured by the benchmark (bench/RESULTS.md), never asserted
here: a timing assert would fail on a busy machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from finetune import config, duration, effective, model, plan
from finetune.ui import hparams_tab

DEMO = ROOT / "presets" / "demo.yaml"


def speed_key(cfg: config.Config) -> str:
    device = model.detect_device()
    args = effective.training_args(cfg, "RUN_DIR", cuda=False, bf16_ok=False, has_eval=False)
    return duration.key(cfg, args, device)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own: no speed measured yet (the tiny models are rebuilt into it)."""
    monkeypatch.setenv("TUNEBOARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_finished_run_gives_the_next_one_its_estimate(demo_run: Path) -> None:
    """demo_run trained presets/demo.yaml to the end: the same config now has an estimate, built from that
    run's speed; a config with another batch size (another speed) has none yet."""
    cfg = config.load(DEMO)
    found = duration.measured(speed_key(cfg))
    assert found and found["source"] == f"run {demo_run.name}" and found["tokens_per_second"] > 0
    assert found["first_step_s"] > 0
    rep = plan.report(cfg)
    est, steps = rep["duration"], rep["steps"]
    tokens = steps.micro_batches * steps.batch_size * rep["dataset"]["lengths"]["mean_cut"]
    assert est["tokens"] == round(tokens)
    training = tokens / found["tokens_per_second"]
    assert est["seconds"] == pytest.approx(found["first_step_s"] + training, abs=0.2)
    assert est["low"] < est["seconds"] < est["high"]
    assert f"(measured by run {demo_run.name})" in plan.format_report(rep)
    other = config.load(DEMO, {"training.per_device_train_batch_size": 4})
    assert plan.report(other)["duration"] is None


def test_calibration_measures_a_few_steps_and_leaves_no_run(cache: Path, home: Path) -> None:
    before = run_cli("plan", "presets/demo.yaml")
    assert "no speed measured on this machine" in before.stdout
    done = run_cli("calibrate", "presets/demo.yaml", "--steps", "6")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "speed:" in done.stdout and "measured by calibration" in done.stdout
    after = run_cli("plan", "presets/demo.yaml")
    assert "measured by calibration" in after.stdout
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())  # not kept as a run


def test_the_page_says_how_long_or_how_to_find_out() -> None:
    est = {"low": 100, "high": 160, "tokens": 12345, "tokens_per_second": 2000.0, "source": "calibration"}
    assert "1 min 40 s to 2 min 40 s" in hparams_tab.duration_html({"duration": est}, "en")
    japanese = hparams_tab.duration_html({"duration": est | {"source": "run 20261201-x"}}, "ja")
    assert "約 1 分 40 秒〜2 分 40 秒" in japanese and "実行 20261201-x" in japanese
    unknown = hparams_tab.duration_html({"duration": None}, "ja")
    assert "まだ測られていません" in unknown and "<code>python -m finetune calibrate CONFIG</code>" in unknown


SAID = [(0.2, "1 s"), (59, "59 s"), (90, "1 min 30 s"), (600, "10 min"), (4000, "1 h 6 min")]


@pytest.mark.parametrize(("seconds", "said"), SAID)
def test_durations_read_as_a_person_says_them(seconds: float, said: str) -> None:
    assert duration.human(seconds) == said
