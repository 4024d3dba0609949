"""What the page computes before a run, on the tiny model: rendering, token pieces, schedule, summary.

.venv/bin/pytest tests/ui/test_previews.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune import config, plan
from finetune.ui import charts, previews

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
