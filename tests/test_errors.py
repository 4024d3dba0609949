"""finetune/errors.py: one error family, each error naming the field at fault and the fix.

.venv/bin/pytest tests/test_errors.py -q
"""

from __future__ import annotations

import inspect

import pytest
from conftest import ROOT, run_cli

from finetune import errors


def test_every_engine_error_is_a_tuneboard_error_with_its_problems() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    bad_input = [c for c in classes if issubclass(c, errors.TuneboardError)]
    assert {c.__name__ for c in bad_input} >= {
        "ConfigError", "PresetError", "DataError", "ModelError", "TokenError", "TemplateError",
        "PreflightError", "JobError",
    }  # fmt: skip
    more = [("dataset.columns.completion", "too")]
    err = errors.DataError("dataset.columns.prompt", "map a column", more=more)
    assert err.problems == [("dataset.columns.prompt", "map a column"), ("dataset.columns.completion", "too")]
    assert str(err) == "dataset.columns.prompt: map a column; dataset.columns.completion: too"
    assert errors.TemplateError("no markers").field == "template.name"
    assert errors.JobError("disk full").problems == [("", "disk full")]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model.name_or_path", "/nonexistent/model"], "model.name_or_path"),  # a ModelError
        (["--dataset.path", "/nonexistent/data.csv"], "dataset.path"),  # a DataError
        (["--tokens.add", "[' <x>']"], "tokens.add[0]"),  # a ConfigError
        (["--preset", "nope"], "preset"),  # a PresetError, through the config
    ],
)
def test_the_cli_prints_any_of_them_as_one_line_and_exits_2(args: list[str], says: str) -> None:
    result = run_cli("plan", str(ROOT / "presets" / "demo.yaml"), *args)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # (a first use of the tiny model prints its build above)
    assert "Traceback" not in result.stderr and last.startswith(f"error: {says}")
