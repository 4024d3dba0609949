"""Tests for finetune/data.py: every layout, format and bad input, without the network.

.venv/bin/pytest tests/test_data.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pandas as pd
import pytest

from finetune import data, datafiles
from finetune.config import ColumnMap, DatasetConfig
from finetune.data import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each test converts its files afresh, so a stale cache entry can never make it pass.
    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path / "home"))  # its cache: HOME/.cache/datasets


def cfg(path: Path | str, **kwargs) -> DatasetConfig:
    return DatasetConfig(path=str(path), **kwargs)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def error_of(config: DatasetConfig, task: str = "sft") -> DataError:
    with pytest.raises(DataError) as info:
        data.prepare(config, task)
    return info.value


CHAT = [
    {"messages": [{"role": "user", "content": "3 + 4?"}, {"role": "assistant", "content": "3 + 4 = 7."}]},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
]


# ---------------------------------------------------------------- bundled samples


@pytest.mark.parametrize(
    ("name", "task", "layout", "at_least"),
    [
        ("sample-chat", "sft", "messages", 250),
        ("sample-sentiment", "classification", "classification", 150),
        ("sample-text", "text", "text", 150),
        ("sample-alpaca", "sft", "alpaca", 25),
        ("sample-prompt-completion", "sft", "prompt_completion", 25),
    ],
)
def test_bundled_samples_load_and_convert(name: str, task: str, layout: str, at_least: int) -> None:
    prepared = data.prepare(cfg(f"builtin:{name}"), task)
    assert prepared.layout == layout
    assert prepared.n_records >= at_least
    assert prepared.warnings == []
    assert prepared.train.column_names == {"sft": ["messages"], "text": ["text"]}.get(task, ["text", "label"])


def test_sample_chat_content() -> None:
    path = datafiles.DATA_DIR / "sample-chat.jsonl"
    assert path.stat().st_size < 100_000
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    users = [m["content"] for r in rows for m in r["messages"] if m["role"] == "user"]
    assert 280 <= len(rows) <= 320
    assert sum("<user_name>" in json.dumps(r, ensure_ascii=False) for r in rows) >= 15
    assert sum(r["messages"][0]["role"] == "system" for r in rows) >= 20
    assert sum(len(r["messages"]) > 3 for r in rows) >= 5
    japanese = sum(any("\u3040" <= ch <= "\u30ff" for ch in u) for u in users)
    assert 0.3 < japanese / len(users) < 0.7


def test_sample_sentiment_labels() -> None:
    prepared = data.prepare(cfg("builtin:sample-sentiment"), "classification")
    assert prepared.label_names == ["negative", "neutral", "positive"]
    assert set(prepared.train["label"]) == {0, 1, 2}


def test_unknown_builtin_lists_the_bundled_ones() -> None:
    err = error_of(cfg("builtin:nope"))
    assert err.field == "dataset.path"
    assert "sample-chat" in err.message


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    ("columns", "layout", "mapping"),
    [
        (["messages"], "messages", {"messages": "messages"}),
        (["conversations", "System"], "messages", {"messages": "conversations", "system": "System"}),
        (
            ["Instruction", "input", "output"],
            "alpaca",
            {"instruction": "Instruction", "input": "input", "output": "output"},
        ),
        (["prompt", "completion"], "prompt_completion", {"prompt": "prompt", "completion": "completion"}),
        (["question", "answer", "id"], "prompt_completion", {"prompt": "question", "completion": "answer"}),
        (["input", "output"], "prompt_completion", {"prompt": "input", "completion": "output"}),
        (["TEXT", "label"], "classification", {"text": "TEXT", "label": "label"}),
        (["text", "id"], "text", {"text": "text"}),
        (["body"], "text", {"text": "body"}),
    ],
)
def test_detect_layout(columns: list[str], layout: str, mapping: dict[str, str]) -> None:
    assert data.detect_layout(columns) == (layout, ColumnMap(**mapping))


def test_detect_layout_unknown_columns() -> None:
    with pytest.raises(DataError) as info:
        data.detect_layout(["a", "b"])
    assert info.value.field == "dataset.layout"
    assert "a, b" in info.value.message


def test_messages_openai_and_sharegpt(tmp_path: Path) -> None:
    sharegpt = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
            ]
        },
    ]
    prepared = data.prepare(cfg(write_jsonl(tmp_path / "s.jsonl", sharegpt)), "sft")
    assert prepared.train[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    openai = data.prepare(cfg(write_jsonl(tmp_path / "o.jsonl", CHAT)), "sft", system_prompt="Be kind.")
    assert openai.train[0]["messages"][0] == {"role": "system", "content": "Be kind."}
    assert openai.train[0]["messages"][1:] == CHAT[0]["messages"]


def test_alpaca_joins_instruction_and_input(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Add.", "input": "3, 4", "output": "7"},
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    convs = data.prepare(cfg(path), "sft").train["messages"]
    assert convs[0] == [{"role": "user", "content": "Add.\n\n3, 4"}, {"role": "assistant", "content": "7"}]
    assert convs[1][0] == {"role": "user", "content": "Say hi."}


def test_prompt_completion_with_system_column(tmp_path: Path) -> None:
    path = tmp_path / "pc.csv"
    pd.DataFrame({"prompt": ["2 + 2 =", "Hi"], "completion": [4, "Hello"], "system": ["Math.", ""]}).to_csv(
        path, index=False
    )
    convs = data.prepare(cfg(path), "sft", system_prompt="Default.").train["messages"]
    assert convs[0] == [
        {"role": "system", "content": "Math."},
        {"role": "user", "content": "2 + 2 ="},
        {"role": "assistant", "content": "4"},
    ]
    assert convs[1][0] == {"role": "system", "content": "Default."}


def test_task_text_uses_the_text_column_and_refuses_messages(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("first line\n\nsecond line\n", encoding="utf-8-sig")  # a BOM must not reach the text
    assert data.prepare(cfg(path), "text").train["text"] == ["first line", "second line"]
    err = error_of(cfg(write_jsonl(tmp_path / "c.jsonl", CHAT)), "text")
    assert err.field == "task"
    assert "task sft" in err.message


def test_classification_string_labels_sorted(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": ["pos", "neg", "neu", "pos"]}).to_csv(
        path, index=False
    )
    prepared = data.prepare(cfg(path), "classification")
    assert prepared.label_names == ["neg", "neu", "pos"]
    assert prepared.train["label"] == [2, 0, 1, 2]


def test_classification_int_labels_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    write_jsonl(path, [{"text": "a", "label": 2}, {"text": "b", "label": 0}, {"text": "c", "label": 1}])
    prepared = data.prepare(cfg(path), "classification")
    assert prepared.train["label"] == [2, 0, 1]
    assert prepared.label_names == ["0", "1", "2"]


def test_classification_without_label_column(tmp_path: Path) -> None:
    err = error_of(cfg(write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}])), "classification")
    assert err.field == "dataset.columns.label"


# ---------------------------------------------------------------- formats


FRAME = pd.DataFrame({"prompt": ["1 + 1 =", "猫 in English?", "x"], "completion": ["2", "cat", "y"]})


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_every_format(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"d.{fmt}"
    if fmt in ("csv", "tsv"):
        FRAME.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    elif fmt == "parquet":
        FRAME.to_parquet(path)
    else:
        FRAME.to_json(path, orient="records", lines=fmt == "jsonl", force_ascii=False)
    prepared = data.prepare(cfg(path), "sft")
    assert prepared.layout == "prompt_completion"
    assert [c[0]["content"] for c in prepared.train["messages"]] == list(FRAME["prompt"])
    assert [c[1]["content"] for c in prepared.train["messages"]] == list(FRAME["completion"])


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = tmp_path / "d.data"
    FRAME.to_csv(path, index=False, sep="\t")
    assert error_of(cfg(path)).field == "dataset.format"
    assert data.prepare(cfg(path, format="tsv"), "sft").n_records == 3


def test_json_wrapper_is_unwrapped(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"data": CHAT}), encoding="utf-8")
    assert data.prepare(cfg(path), "sft").n_records == 2


def test_json_lines_named_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "lines.json", CHAT)
    assert data.prepare(cfg(path), "sft").train["messages"] == [r["messages"] for r in CHAT]


def test_csv_with_bom_has_a_clean_first_column(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nいいね,pos\nだめ,neg\n".encode("utf-8-sig"))
    assert data.preview(cfg(path))["columns"] == ["text", "label"]
    assert data.prepare(cfg(path), "classification").label_names == ["neg", "pos"]


# ---------------------------------------------------------------- mapping, max_records, split


def test_explicit_columns_override_detection(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"text": "ignored", "q": "Why?", "a": "Because."}])
    prepared = data.prepare(cfg(path, columns={"prompt": "q", "completion": "a"}), "sft")
    assert prepared.layout == "prompt_completion"
    assert prepared.train[0]["messages"][0]["content"] == "Why?"
    explicit = data.prepare(cfg(path, layout="text", columns={"text": "a"}), "text")
    assert explicit.train["text"] == ["Because."]


def test_missing_mapped_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"q": "Why?", "a": "Because."}])
    err = error_of(cfg(path, columns={"prompt": "question", "completion": "a"}))
    assert err.field == "dataset.columns.prompt"
    assert "'question'" in err.message and "q, a" in err.message


def test_layout_needs_a_role_nobody_plays(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"q": "Why?", "a": "Because."}])
    err = error_of(cfg(path, layout="alpaca"))
    assert err.field == "dataset.columns.instruction"


def test_max_records_takes_the_first(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}"} for i in range(10)])
    assert data.prepare(cfg(path, max_records=3), "text").train["text"] == ["line 0", "line 1", "line 2"]


def test_validation_split(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}"} for i in range(10)])
    first = data.prepare(cfg(path, validation_split=0.2), "text")
    again = data.prepare(cfg(path, validation_split=0.2), "text")
    assert (len(first.train), len(first.eval)) == (8, 2)
    assert first.eval["text"] == again.eval["text"]
    assert sorted([*first.train["text"], *first.eval["text"]]) == sorted(f"line {i}" for i in range(10))
    tiny = data.prepare(cfg(path, validation_split=0.01, max_records=2), "text")
    assert (len(tiny.train), len(tiny.eval)) == (1, 1)
    assert data.prepare(cfg(path), "text").eval is None


def test_validation_split_leaving_no_training_records(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "only one"}])
    err = error_of(cfg(path, validation_split=0.5), "text")
    assert err.field == "dataset.validation_split"


# ---------------------------------------------------------------- record validation


def test_empty_values_dropped_with_a_warning(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "a", "completion": "b"},
            {"prompt": "c", "completion": " "},
            {"prompt": None, "completion": "d"},
        ],
    )
    prepared = data.prepare(cfg(path), "sft")
    assert prepared.n_records == 1
    assert any("1 records" in w and "'completion'" in w for w in prepared.warnings)
    assert any("1 records" in w and "'prompt'" in w for w in prepared.warnings)


def test_column_present_but_all_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("instruction,input,output\nAdd.,1,\nSay hi.,,\n", encoding="utf-8")
    err = error_of(cfg(path))
    assert err.field == "dataset.columns.output"
    assert "'output'" in err.message


def test_unknown_role_names_record_and_role(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]}
    err = error_of(cfg(write_jsonl(tmp_path / "r.jsonl", [CHAT[0], bad])))
    assert err.field == "dataset.columns.messages"
    assert "record 1" in err.message and "'bot'" in err.message


def test_conversation_without_assistant_dropped(tmp_path: Path) -> None:
    lonely = {"messages": [{"role": "user", "content": "anyone?"}]}
    prepared = data.prepare(cfg(write_jsonl(tmp_path / "r.jsonl", [*CHAT, lonely])), "sft")
    assert prepared.n_records == 2
    assert prepared.warnings == ["dropped 1 conversations with no assistant turn"]


def test_records_are_every_usable_record_as_prepare_converts_them(tmp_path: Path) -> None:
    lonely = {"messages": [{"role": "user", "content": "anyone?"}]}
    sharegpt = {"messages": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    rows = [CHAT[i % 2] if i % 7 else lonely for i in range(40)]
    rows[3] = sharegpt
    config = cfg(write_jsonl(tmp_path / "r.jsonl", rows), max_records=38)
    prepared = data.prepare(config, "sft", system_prompt="Be brief.")
    batches = list(data.records(config, "sft", system_prompt="Be brief.", batch_size=10))
    assert [len(batch) for _, _, batch in batches] == [10, 10, 10, 2]  # 6 of the 38 rows have no reply
    assert [(read, total) for read, total, _ in batches] == [(12, 38), (24, 38), (35, 38), (38, 38)]
    assert [r for _, _, batch in batches for r in batch] == prepared.train.to_list()
    assert prepared.train[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert prepared.train[2]["messages"][1:] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("ragged.csv", b"prompt,completion\na,b\nc,d,e\n", "line 3"),
        ("ragged.tsv", b"prompt\tcompletion\na\tb\nc\td\te\n", "line 3"),
        ("longer-rows.csv", b"prompt,completion\na,b,c\n", "more fields than its header"),
        ("broken.json", b'[{"text": "a"},\n {"text": "b"\n]', "line 3"),
        ("broken.jsonl", b'{"text": "a"}\n{"text": "b"\n{"text": "c"}\n', "line 2"),
        ("list-line.jsonl", b'{"text": "a"}\n[1, 2]\n', "line 2"),
        ("latin1.csv", "text\ncafé\n".encode("latin-1"), "UTF-8"),
        ("latin1.jsonl", '{"text": "café"}\n'.encode("latin-1"), "UTF-8"),
        ("empty.csv", b"", "empty"),
        ("blank.jsonl", b"\n\n", "empty"),
        ("object.json", b'{"text": "a", "label": 1}', "not a list"),
        ("scalars.json", b'["a", "b"]', "list of objects"),
        ("fake.parquet", b"text\nnot parquet at all\n", "Parquet"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    err = error_of(cfg(path))
    assert err.field == "dataset.path"
    assert expected in err.message
    assert str(err) == f"dataset.path: {err.message}"


def test_non_utf8_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "sjis.csv"
    path.write_bytes("text,label\nok,pos\n猫です,neg\n".encode("shift_jis"))
    err = error_of(cfg(path), "classification")
    assert "line 3" in err.message and "re-save" in err.message


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for path in ("nothing.csv", "data/train.csv", "plainword"):
        err = error_of(cfg(path))
        assert err.field == "dataset.path"
        assert f"file {path} does not exist" in err.message


def test_hub_id_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read the variable at import; patch their copies so nothing can reach the network.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert datafiles.resolve_source(cfg("someorg/somedata")) == ("someorg/somedata", "hub")
    err = error_of(cfg("someorg/somedata"))
    assert err.field == "dataset.path"
    assert "Hub dataset 'someorg/somedata'" in err.message and "HF_HUB_OFFLINE" in err.message


# ---------------------------------------------------------------- preview and length stats


def test_preview(tmp_path: Path) -> None:
    rows = [{"prompt": "x" * 1000, "completion": f"{i}"} for i in range(30)]
    result = data.preview(cfg(write_jsonl(tmp_path / "p.jsonl", rows)), n=5)
    assert result["columns"] == ["prompt", "completion"]
    assert len(result["rows"]) == 5 and result["n_records"] == 30
    assert 290 <= len(result["rows"][0]["prompt"]) <= 310
    assert result["layout"] == "prompt_completion"
    assert result["mapping"] == {"prompt": "prompt", "completion": "completion"}
    assert result["error"] is None


def test_preview_shows_columns_when_layout_is_unknown(tmp_path: Path) -> None:
    result = data.preview(cfg(write_jsonl(tmp_path / "p.jsonl", [{"a": 1, "b": 2}])))
    assert result["layout"] is None and result["columns"] == ["a", "b"]
    assert result["error"]["field"] == "dataset.layout"


def test_length_stats() -> None:
    stats = data.length_stats(list(range(1, 101)), max_length=90)
    assert (stats["count"], stats["min"], stats["max"], stats["over_max"]) == (100, 1, 100, 10)
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert len(stats["histogram"]["counts"]) == 20 and sum(stats["histogram"]["counts"]) == 100
    assert len(stats["histogram"]["edges"]) == 21
    assert data.length_stats([], 10)["count"] == 0


# ---- separators --------------------------------------------------------------------------------------


def test_a_semicolon_csv_from_a_european_excel_is_split_on_semicolons(tmp_path: Path):
    path = tmp_path / "faq.csv"
    path.write_text('prompt;completion\nWie geht es?;Gut, danke.\n"Preis; netto?";"12,50 €"\n', "utf-8-sig")
    prepared = data.prepare(cfg(path), "sft")
    assert prepared.layout == "prompt_completion" and prepared.n_records == 2
    replies = [c[1]["content"] for c in prepared.train["messages"]]
    assert sorted(replies) == ["12,50 €", "Gut, danke."]  # the decimal comma stays in its field


def test_commas_stay_the_separator_when_fields_hold_semicolons(tmp_path: Path):
    path = tmp_path / "faq.csv"
    path.write_text('prompt,completion\nList them,"a; b; c"\nAgain?,"d; e"\n', encoding="utf-8")
    assert datafiles.csv_delimiter(path) == ","
    assert data.prepare(cfg(path), "sft").n_records == 2


def test_a_lone_column_named_with_a_separator_says_the_file_was_not_split(tmp_path: Path):
    path = tmp_path / "faq.csv"
    path.write_text("prompt;completion\nno separator here\nnor here\n", encoding="utf-8")
    error = error_of(cfg(path))
    assert error.field == "dataset.path"
    assert "one column, named 'prompt;completion'" in error.message and "was not split" in error.message


def test_every_column_left_to_map_is_named_at_once(tmp_path: Path):
    path = tmp_path / "faq.csv"
    path.write_text("質問,回答,メモ\n配送は?,三日です。,\n", encoding="utf-8")
    error = error_of(cfg(path, layout="prompt_completion"))
    assert error.todo and [field for field, _ in error.problems] == [
        "dataset.columns.prompt",
        "dataset.columns.completion",
    ]
    assert all("none of the columns (質問, 回答, メモ)" in message for _, message in error.problems)
