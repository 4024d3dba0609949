"""What the page computes before a run, on the tiny model: rendering, token pieces, schedule, summary.

.venv/bin/pytest tests/ui/test_previews.py -q
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from finetune import config, plan
from finetune.ui import charts, dataset_tab, previews

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tiny_llama: str) -> config.Config:
    return config.load(ROOT / "presets" / "demo.yaml")


def test_analyze_the_demo(demo) -> None:
    a = previews.analyze(demo)
    assert a["records"] == 300 and a["layout"] == "messages" and a["template"] == "llama3.1"
    assert a["detected_template"] == "llama3.1" and a["family"] == "llama3.1"
    assert a["vocab_after"] == a["vocab_before"] + 1 and a["new_tokens"] == ["<user_name>"]
    assert a["lengths"]["count"] == 300 and a["lengths"]["over_max"] == 0
    assert a["missing_template_tokens"] == []


def test_rendered_record_marks_the_reply_as_loss(demo) -> None:
    rec = previews.render_record(demo, 1)  # "Hi, I'm <user_name>." -> "Hello, <user_name>! How can I help?"
    text = "".join(p["text"] for p in rec["pieces"])
    loss = "".join(p["text"] for p in rec["pieces"] if p["loss"])
    assert text.startswith("<|begin_of_text|>") and "<user_name>" in text
    assert loss == "Hello, <user_name>! How can I help?<|eot_id|>"
    assert any(p["special"] and p["text"] == "<user_name>" for p in rec["pieces"])


def test_pieces_keep_characters_whole(demo) -> None:
    split = previews.tokenize_compare(demo, "ご注文ありがとうございます。<user_name>")
    for side in ("before", "after"):
        assert "".join(p["text"] for p in split[side]) == "ご注文ありがとうございます。<user_name>"
        assert not any("\ufffd" in p["text"] for p in split[side])
    assert len(split["after"]) < len(split["before"])


def test_scan_finds_token_like_strings(demo) -> None:
    found = previews.scan_token_like(demo)
    assert found[0]["token"] == "<user_name>" and found[0]["missing"] is False
    bare = config.load(ROOT / "presets" / "demo.yaml", {"tokens.add": []})
    assert previews.scan_token_like(bare)[0]["missing"] is True


def test_summary_matches_plan_and_schedule_warms_up(demo) -> None:
    s = previews.summary(demo, 300)
    assert s["steps"] == plan.steps(300, batch_size=8, epochs=3, warmup=0.05, save_strategy="epoch").as_dict()
    schedule = dict(s["schedule"])
    assert schedule[0] == 0.0 and max(schedule.values()) == pytest.approx(3e-3, rel=0.01)
    assert schedule[114] < 1e-5  # cosine ends near zero
    assert s["memory"]["params"] > 0


def test_missing_template_tokens(demo) -> None:
    other = config.load(ROOT / "presets" / "demo.yaml", {"template.name": "chatml"})
    a = previews.analyze(other)
    assert a["missing_template_tokens"] == ["<|im_start|>", "<|im_end|>"]


def test_html_views_escape_user_text() -> None:
    html = charts.token_pieces([{"text": "<script>", "ids": [1], "loss": True, "special": False}])
    assert "<script>" not in html and "&lt;script&gt;" in html and "loss" in html
    stats = {
        "count": 3,
        "min": 5,
        "mean": 7.0,
        "p90": 9.0,
        "max": 300,
        "over_max": 1,
        "histogram": {"edges": [0, 100, 200, 300], "counts": [1, 1, 1]},
    }
    svg = charts.histogram(stats, 256, "en")
    assert "tb-maxline" in svg and "max_length 256" in svg and "1 of 3 records are longer" in svg
    assert "tb-bar over" in svg  # the bar past max_length is marked


# ---------------------------------------------------------------- token lengths of every record


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 conversations: more than the analysis measures at once (preflight.LENGTH_SAMPLE)."""
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(3000):
            reply = " ".join(["Thanks for your order."] * (1 + i % 9)) + " こんにちは。" * (i % 3)
            messages = [
                {"role": "user", "content": f"Where is order {i}?"},
                {"role": "assistant", "content": reply},
            ]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


def test_the_page_counts_every_record_after_showing_a_sample(ctx, form: dict, chats: Path) -> None:
    d = {**form, ctx.binder.component("dataset.path"): str(chats)}
    first = ctx.run_analysis(d)[ctx.analysis]  # as a committed field runs it: this starts the count
    assert first["ok"] and first["counting"]
    assert (first["lengths"]["count"], first["lengths"]["records"]) == (2000, 3000)
    shown = dataset_tab.lengths_view(first, "en")
    assert "Sampled 2,000 of 3,000 records" in shown and "% read" in shown
    assert "3,000 件中 2,000 件を抽出" in dataset_tab.lengths_view(first, "ja")
    deadline = time.monotonic() + 300
    while not (previews.every_record_state(first["key"]) or {}).get("done"):
        assert not previews.every_record_state(first["key"])["error"] and time.monotonic() < deadline
        time.sleep(0.2)
    tick = dataset_tab._counted(ctx, {**d, ctx.analysis: first})  # the timer's next tick: analyse again
    assert tick[ctx.dataset.lengths_done] and tick[ctx.dataset.lengths_timer].active is False
    again = ctx.run_analysis(d)[ctx.analysis]
    assert (again["lengths"]["count"], again["lengths"]["records"], again["counting"]) == (3000, 3000, False)
    assert again["lengths"]["max"] >= first["lengths"]["max"]
    assert dataset_tab.lengths_source(again, "en") == ""
    assert "Sampled" not in dataset_tab.lengths_view(again, "en")


def test_statistics_say_they_are_a_sample_in_both_languages(monkeypatch: pytest.MonkeyPatch) -> None:
    big = {"lengths": {"count": 2000, "records": 5_000_000}, "counting": False, "key": "k"}
    assert dataset_tab.lengths_source(big, "en").startswith("Sampled 2,000 of 5,000,000 records")
    assert dataset_tab.lengths_source(big, "ja").startswith("5,000,000 件中 2,000 件を抽出")
    stopped = {"read": 10, "total": 20, "done": False, "error": "template 'gemma2': no (record 71)"}
    monkeypatch.setattr(previews, "every_record_state", lambda key: stopped)
    said = dataset_tab.lengths_source({**big, "counting": True}, "en")
    assert said.startswith("Sampled 2,000 of 5,000,000 records") and "stopped: template 'gemma2'" in said


def test_a_stream_says_its_statistics_come_from_its_first_records(tmp_path: Path, tiny_llama: str) -> None:
    path = tmp_path / "chats.jsonl"
    rows = [
        [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": f"a {i}"}] for i in range(40)
    ]
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows), encoding="utf-8")
    overrides = {"dataset.path": str(path), "dataset.streaming": True, "training.max_steps": 5}
    streamed = config.load("presets/demo.yaml", overrides)
    text = plan.format_report(plan.report(streamed))
    assert "a stream of unknown length; what follows comes from its first 40 records" in text
    assert "max_steps 5 x (batch 8 x accumulation 1 x 1 device) = 40 records read from the stream" in text
    analysis = previews.analyze(streamed)
    assert analysis["streamed"] and analysis["records"] == 40
    assert "先頭の 40 件" in dataset_tab.lengths_source(analysis, "ja")
    assert "first 40 records" in dataset_tab.lengths_source(analysis, "en")
