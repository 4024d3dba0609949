"""dataset.streaming: records read as training needs them (finetune/datafiles.py, data.py, config.py).

    .venv/bin/python -m pytest tests/test_streaming.py -q

No hub is reachable here, so a folder of Parquet shards stands in for a Hub dataset: datafiles.load reads
it with the same ``datasets.load_dataset(id_or_folder, name=..., split=..., streaming=True)`` call as a Hub
id, and a JSONL file goes through the file builders with ``streaming=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from finetune import config as cfg
from finetune import data, datafiles, paths
from finetune.errors import ConfigError, DataError


def chats(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(start, start + n)
    ]


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Three Parquet shards named as a Hub repo names them: 30 chats in order."""
    folder = tmp_path / "shards" / "data"
    folder.mkdir(parents=True)
    for k in range(3):
        pd.DataFrame(chats(10, 10 * k)).to_parquet(folder / f"train-{k:05d}-of-00003.parquet")
    return folder.parent


def stream(path: Path, **extra) -> cfg.DatasetConfig:
    return cfg.DatasetConfig(path=str(path), streaming=True, **extra)


def test_a_folder_of_shards_streams_through_the_hub_call(shards: Path) -> None:
    ds = datafiles.load(stream(shards))
    assert isinstance(ds, datasets.IterableDataset) and ds.column_names == ["messages"]
    first = data.prepare(stream(shards), "sft", sample=5)
    assert first.sampled and first.streamed and first.n_records == 5
    assert [r["messages"][0]["content"] for r in first.train] == [f"question {i}" for i in range(5)]
    whole = data.prepare(stream(shards), "sft")  # training: the stream itself, converted as it is read
    assert isinstance(whole.train, datasets.IterableDataset) and len(whole.first) == 30
    assert [r["messages"][1]["content"] for r in whole.train][-1] == "answer 29"


def test_a_jsonl_file_streams_and_previews_without_a_length(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    rows = [*chats(4), {"messages": [{"role": "user", "content": "no reply"}]}, *chats(3, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    shown = data.preview(stream(path), 3)
    assert shown["n_records"] is None and len(shown["rows"]) == 3 and shown["layout"] == "messages"
    whole = data.prepare(stream(path), "sft")
    assert len(list(whole.train)) == 7  # the conversation without a reply is skipped, as without streaming
    assert any("no assistant turn" in w for w in whole.warnings)


def test_an_empty_or_missing_stream_is_said_on_the_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    for path in (empty, tmp_path / "nowhere.jsonl"):
        with pytest.raises(DataError) as caught:
            datafiles.load(stream(path))
        assert caught.value.field == "dataset.path"


def test_a_folder_without_streaming_says_how_to_read_it(shards: Path) -> None:
    with pytest.raises(DataError, match="dataset.streaming"):
        datafiles.load(cfg.DatasetConfig(path=str(shards)))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({}, "training.max_steps"),
        ({"dataset": {"validation_split": 0.1}}, "dataset.validation_split"),
        ({"task": "classification"}, "dataset.streaming"),
        ({"dataset": {"max_records": 100}}, "dataset.max_records"),
    ],
)
def test_what_a_stream_cannot_do_is_refused_by_its_field(extra: dict, field: str) -> None:
    raw = {"dataset": {"path": "org/huge", "streaming": True}, "training": {"max_steps": 10}}
    for section, values in extra.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    if field == "training.max_steps":
        raw["training"] = {}
    with pytest.raises(ConfigError) as caught:
        cfg.from_dict(raw)
    assert field in str(caught.value)


def test_training_from_a_stream_runs_max_steps_in_stored_order(
    shards: Path, tmp_path: Path, tiny_llama
) -> None:
    run_dir = tmp_path / "run"
    result = run_cli(
        "train", "presets/demo.yaml", "--dataset.path", str(shards), "--dataset.streaming", "true",
        "--training.max_steps", "5", "--after.stop_check", "false", "--run-dir", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    assert status["state"] == "finished" and status["step"] == 5
    effective = yaml.safe_load((run_dir / "effective_config.yaml").read_text(encoding="utf-8"))
    assert effective["dataset"]["streaming"] is True
    assert effective["training"]["train_sampling_strategy"] != "group_by_length"  # nothing to group
    assert (run_dir / "final").is_dir()


def test_the_page_opens_no_more_for_a_stream_than_for_a_file(shards: Path, tmp_path: Path) -> None:
    # dataset.path from the page goes through paths.Access whatever dataset.streaming says: a folder is not a
    # data file (a folder of shards streams from the CLI only), system folders stay closed, and a page others
    # reach reads only inside its data folders.
    assert "not a data file" in paths.Access().dataset_problem(stream(shards))
    assert "/proc" in paths.Access().dataset_problem(stream(Path("/proc/self")))
    shard = next((shards / "data").iterdir())
    shared = paths.Access(shared=True, data_dirs=(tmp_path / "allowed",))
    assert shared.dataset_problem(stream(shard)) and paths.Access().dataset_problem(stream(shard)) is None
