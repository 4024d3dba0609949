"""Tests for finetune/uploads.py: hostile names, links, size, content that lies about its format.

.venv/bin/pytest tests/test_uploads.py -q
"""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from finetune import data, uploads
from finetune.config import DatasetConfig
from finetune.uploads import UploadError

CSV = "prompt,completion\nhello,world\n"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """Stands for Gradio's upload cache: one folder per upload, as Gradio lays it out."""
    folder = tmp_path / "gradio-cache"
    folder.mkdir()
    return folder


def cached(cache: Path, content: bytes | str, name: str = "upload.csv") -> Path:
    path = cache / "abc123" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def stored_names(home: Path) -> list[str]:
    folder = home / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "original, kept",
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("/abs/x.csv", "x.csv"),
        ("..\\..\\win.csv", "win.csv"),
        ("C:\\Users\\me\\data.jsonl", "data.jsonl"),
        ("....csv.csv", "csv.csv"),
        (".hidden.csv", "hidden.csv"),
        ("a\x00b\nc\u202eD.csv", "a_b_c_D.csv"),  # NUL, newline, right-to-left override
        ("my data (1).csv", "my_data_1.csv"),
        ("サポート問答.csv", "サポート問答.csv"),
        ("..", "data"),
    ],
)
def test_safe_name(original: str, kept: str) -> None:
    assert uploads.safe_name(original) == kept


def test_long_names_are_cut_keeping_the_extension() -> None:
    name = uploads.safe_name("長" * 300 + ".parquet")
    assert name.endswith(".parquet") and len(name.encode()) <= uploads.MAX_NAME_BYTES


@pytest.mark.parametrize(
    "original", ["../../etc/passwd.csv", "/abs/x.csv", "..\\..\\win.csv", "/tmp/../../x.csv"]
)
def test_traversal_names_land_inside_uploads(home: Path, cache: Path, original: str) -> None:
    target = uploads.store(home, cached(cache, CSV), original)
    assert target.parent == (home / "uploads").resolve()
    assert target.name.endswith("-" + uploads.safe_name(original))
    assert target.read_text() == CSV
    assert not Path("/etc/passwd.csv").exists() and not Path("/abs").exists()


def test_stored_by_content_hash_and_name_read_by_the_loader(home: Path, cache: Path) -> None:
    first = uploads.store(home, cached(cache, CSV), "a.csv")
    again = uploads.store(home, cached(cache, CSV), "a.csv")
    assert first == again and stored_names(home) == [first.name]  # no half-written .incoming files left
    rows = data.preview(DatasetConfig(path=str(first)))
    assert rows["rows"][0]["prompt"] == "hello"


def test_japanese_name_and_bom_csv_kept(home: Path, cache: Path) -> None:
    content = codecs.BOM_UTF8 + "質問,回答\n返品はできますか,はい\n".encode()
    target = uploads.store(home, cached(cache, content, "x.csv"), "サポート問答.csv")
    assert target.name.endswith("-サポート問答.csv") and target.read_bytes() == content


def test_a_symlink_is_not_followed(home: Path, cache: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("token,value\nhf,abc\n")
    link = cache / "link.csv"
    link.symlink_to(secret)
    with pytest.raises(UploadError, match="links are not followed") as err:
        uploads.store(home, link, "link.csv")
    assert err.value.field == "dataset.path"
    assert stored_names(home) == []


def test_uploads_folder_may_not_be_a_link_out_of_home(home: Path, cache: Path, tmp_path: Path) -> None:
    home.mkdir()
    (home / "uploads").symlink_to(tmp_path)
    with pytest.raises(UploadError, match="not a link out of it"):
        uploads.store(home, cached(cache, CSV), "a.csv")


def test_oversize_refused(home: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEBOARD_MAX_UPLOAD_MB", "1")
    big = "a,b\n" + "x,y\n" * (2**20 // 4)
    with pytest.raises(UploadError, match="larger than the upload limit of 1 MB"):
        uploads.store(home, cached(cache, big), "big.csv")
    assert stored_names(home) == []
    assert uploads.store(home, cached(cache, CSV), "small.csv").exists()


def test_limit_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert uploads.max_bytes() == uploads.DEFAULT_MAX_MB * 2**20
    monkeypatch.setenv("TUNEBOARD_MAX_UPLOAD_MB", "lots")
    with pytest.raises(ValueError, match="TUNEBOARD_MAX_UPLOAD_MB"):
        uploads.max_bytes()


def zip_bytes() -> bytes:
    """A zip with a fixed date: the bytes name the test, and both pytest workers must collect the same one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(zipfile.ZipInfo("sheet.csv", date_time=(2026, 1, 1, 0, 0, 0)), CSV)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, name, message",
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00", "run.csv", "a Linux executable"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "setup.csv", "a Windows executable"),
        (zip_bytes(), "table.csv", "a zip archive"),
        (b"a,b\n\x00\x01\x02\n", "blob.tsv", "binary data \\(a NUL byte on line 2\\)"),
        ("質問,回答\n".encode("shift_jis"), "sjis.csv", "not UTF-8 text \\(line 1\\)"),
        (CSV, "table.parquet", "not a Parquet file"),
        (b"PAR1 but then nothing", "cut.parquet", "does not end with the PAR1 marker"),
        ('{"a": 1\n', "broken.jsonl", "the first line is not JSON"),
        ('[\n  {"a": 1},\n', "broken.json", "not valid JSON \\(line 3"),
        (b"", "empty.csv", "the file is empty"),
        (CSV, "script.sh", "not a table file"),
        (CSV, "noext", "not a table file"),
    ],
)
def test_content_must_match_the_format(
    home: Path, cache: Path, content: bytes | str, name: str, message: str
) -> None:
    with pytest.raises(UploadError, match=message):
        uploads.store(home, cached(cache, content), name)
    assert stored_names(home) == []


@pytest.mark.parametrize(
    "content, name",
    [
        ('[\n  {"prompt": "a", "completion": "b"}\n]\n', "pretty.json"),
        ('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n', "lines.json"),
        ('\n{"prompt": "a", "completion": "b"}\n', "records.jsonl"),
        ("prompt\tcompletion\na\tb\n", "tabs.tsv"),
        ("one paragraph\n\nanother\n", "notes.txt"),
    ],
)
def test_text_formats_accepted(home: Path, cache: Path, content: str, name: str) -> None:
    assert uploads.store(home, cached(cache, content), name).read_text() == content


def test_parquet_accepted(home: Path, cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "t.parquet"
    pd.DataFrame({"prompt": ["a"], "completion": ["b"]}).to_parquet(source)
    target = uploads.store(home, source, "t.parquet")
    assert data.preview(DatasetConfig(path=str(target)))["rows"][0]["completion"] == "b"


def test_discard_removes_the_cached_copy_and_its_folder(cache: Path, tmp_path: Path) -> None:
    first = cached(cache, CSV, "a.csv")
    second = cached(cache, CSV, "b.csv")  # the same folder
    uploads.discard(first, cache)
    assert not first.exists() and second.exists()
    uploads.discard(second, cache)
    assert not second.parent.exists() and cache.is_dir()


def test_discard_never_touches_files_outside_the_cache(cache: Path, tmp_path: Path) -> None:
    outside = tmp_path / "keep.csv"
    outside.write_text(CSV)
    uploads.discard(outside, cache)
    uploads.discard(cache / ".." / "keep.csv", cache)
    assert outside.exists()


def test_two_people_dropping_the_same_file_at_once_both_get_it(home: Path, cache: Path) -> None:
    """Gradio caches identical bytes at one path: the first handler's discard deletes the file the second
    handler was about to read (CI hit this: the second page kept the sample). Both get the stored copy."""
    dropped = cached(cache, CSV, "faq.csv")
    first = uploads.take(home, dropped, cache)
    assert not dropped.exists()  # the first handler discarded the cached copy
    second = uploads.take(home, dropped, cache)
    assert second == first and first.read_text() == CSV and stored_names(home) == [first.name]
    third = uploads.take(home, cached(cache, CSV, "faq.csv"), cache)  # dropped again later: read again
    assert third == first and list(cache.iterdir()) == []


def test_the_second_of_two_refused_drops_gets_the_same_reason(home: Path, cache: Path) -> None:
    dropped = cached(cache, b"\x7fELF\x02\x01\x01\x00", "tool.csv")
    for _ in range(2):
        with pytest.raises(UploadError, match="a Linux executable"):
            uploads.take(home, dropped, cache)
    assert stored_names(home) == []


def test_a_missing_cached_file_never_taken_is_refused_with_the_fix(home: Path, cache: Path) -> None:
    with pytest.raises(UploadError, match="cannot open it"):
        uploads.take(home, cache / "never" / "faq.csv", cache)
