"""Big data through the page's analysis with a memory ceiling: the work must stay bounded, not just finish.

    .venv/bin/pytest tests/ui/test_big_records.py -q

The probe's 50 MB one-line JSONL took 11 GB (every text tokenized whole, before truncation) and held other
sessions for minutes. Here the same file, and a JSON list of many records, go through what the Dataset and
Prompt-format sections compute (finetune/analysis.py, as the page's analysis process runs it: the preview,
the analysis, the rendered record) in a child process whose address space is capped at what it had mapped
after its imports plus 1.5 GiB: more, and it fails. Timings and peaks are bench/bench_memory.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CEILING = 1536 * 2**20
CHILD = """
import json, os, resource, sys
from finetune import config as cfg
from finetune import analysis  # the engine's analysis itself, in this capped process

def main():
    path, task = sys.argv[1], sys.argv[2]
    config = cfg.from_dict({"task": task, "dataset": {"path": path, "max_length": 512}})
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + int(sys.argv[3]), resource.RLIM_INFINITY))
    shown = analysis.dataset_preview(config.dataset)
    found = analysis.analyze(config)
    record = analysis.render_record(config, 0)
    print(json.dumps({"rows": len(shown["rows"]), "records": found["records"],
                      "lengths": found["lengths"], "tokens": record["tokens"]}))

if __name__ == "__main__":
    main()
"""


def analyse(path: Path, task: str, home: Path) -> dict:
    env = {"TUNEBOARD_HOME": str(home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), task, str(CEILING)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_line(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One record whose answer is 50 MB of Japanese text, on one line."""
    path = tmp_path_factory.mktemp("big") / "one-line.jsonl"
    answer = "これは長い回答です。" * (50_000_000 // 30)
    path.write_text(json.dumps({"prompt": "質問", "completion": answer}, ensure_ascii=False) + "\n")
    return path


def test_a_50_mb_record_is_measured_and_shown_within_the_ceiling(one_line: Path, tmp_path: Path) -> None:
    result = analyse(one_line, "sft", tmp_path / "home")
    assert result["records"] == 1 and result["rows"] == 1
    assert result["lengths"]["over_max"] == 1  # measured on its start, extrapolated: far over max_length
    assert result["lengths"]["max"] > 1_000_000
    assert result["tokens"] == 512  # the record as training sees it: cut at max_length


def test_a_json_list_of_many_records_is_read_in_pieces(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    with path.open("w", encoding="utf-8") as out:  # ~120 MB as one JSON list
        out.write("[")
        for i in range(60_000):
            out.write(("," if i else "") + json.dumps({"text": f"record {i} " + "x" * 2000, "label": i % 3}))
        out.write("]")
    result = analyse(path, "classification", tmp_path / "home")
    assert result["records"] == 60_000 and result["lengths"]["count"] == 2000
