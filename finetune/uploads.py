"""Take in an uploaded data file: a safe name, a size limit, a content check, a copy under HOME/uploads.

    .venv/bin/pytest tests/test_uploads.py -q
    python -c "from finetune import uploads; print(uploads.store(Path('home'), Path('x.csv'), 'x.csv'))"

The page (finetune/ui/dataset_tab.py) calls :func:`take` with the file Gradio wrote to its cache: it is
stored (:func:`store`), then the cached copy is discarded (:func:`discard`) whatever the outcome: Gradio's
cache can be fetched through ``/gradio_api/file=`` by anyone who can reach the page, so an upload must not
stay there.
The name is only ever a label (never a path), the extension must be a table format and the bytes must match
it: ``file_types`` on the upload field is a hint to the browser, not a check. Every refusal is an
:class:`UploadError` for ``dataset.path``, shown next to the upload field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import unicodedata
from pathlib import Path

from finetune.datafiles import FORMATS, DataError, TextCheck, json_array

DEFAULT_MAX_MB = 200  # a fine-tuning table, not a model; TUNEBOARD_MAX_UPLOAD_MB raises or lowers it
MAX_NAME_BYTES = 120  # of the kept name in UTF-8; with the hash prefix, well under most file systems' 255
CHUNK = 1 << 20
# Files people drop by mistake: when one fails the text or Parquet check, its first bytes name what it is.
MAGIC = {
    b"PK\x03\x04": "a zip archive (xlsx, docx and zip files are zip archives)",
    b"\x7fELF": "a Linux executable",
    b"MZ": "a Windows executable",
    b"\x1f\x8b": "a gzip archive",
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old-style Excel or Word file",
}


class UploadError(DataError):
    """A refused upload; ``message`` says why and what to do instead."""

    def __init__(self, message: str):
        super().__init__("dataset.path", message)


def max_bytes() -> int:
    """The upload limit in bytes: TUNEBOARD_MAX_UPLOAD_MB (megabytes, default 200); the page uses it too."""
    raw = os.environ.get("TUNEBOARD_MAX_UPLOAD_MB", str(DEFAULT_MAX_MB))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"TUNEBOARD_MAX_UPLOAD_MB={raw!r}: give a whole number of megabytes, such as 200")
    return int(raw) * 1024 * 1024


def safe_name(original: str) -> str:
    """The last part of ``original`` as a plain file name: letters (any script), digits, ``_ - .`` only.

    ``../../etc/passwd.csv`` -> ``passwd.csv``; ``C:\\x\\サポート.csv`` -> ``サポート.csv``; no leading dots.
    """
    name = unicodedata.normalize("NFC", original).replace("\\", "/").split("/")[-1]
    name = re.sub(r"[^\w.\-]+", "_", name)  # separators, controls, spaces, quotes, invisible format marks
    name = re.sub(r"\.{2,}", ".", name).strip("._ ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem.strip("._ ") or "data"
    while len(f"{stem}.{ext}".encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}.{ext}" if ext else stem


def store(home: Path, source: Path, original_name: str) -> Path:
    """Check ``source`` and copy it to HOME/uploads/<sha256[:10]>-<safe name>; returns the stored path."""
    name = safe_name(original_name)
    fmt = FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise UploadError(f"{name}: not a table file; upload a file ending in one of {', '.join(FORMATS)}")
    folder = _uploads_folder(home)
    partial = folder / f".incoming-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        digest = _copy_checked(source, partial, name, fmt)
        _check_json(partial, name, fmt)
        target = folder / f"{digest[:10]}-{name}"
        os.replace(partial, target)  # same content and name: the same file, replaced atomically
    finally:
        partial.unlink(missing_ok=True)
    return target


# Gradio names a cached upload's folder by a hash of its bytes, so two people dropping the same file at once
# share one cached path, and the first one's discard can delete it before the second one's handler reads it.
# What each cached path became (stored file or refusal), so the second gets the first's outcome.
_TAKEN: dict[tuple[str, str], Path | UploadError] = {}
_TAKEN_KEPT = 512


def take(home: Path, cached: Path, cache_root: Path) -> Path:
    """Store Gradio's cached upload ``cached`` (named as the browser sent it), then discard the cached copy.

    Raises UploadError. A cached path already taken and discarded gives the same stored file (or refusal).
    """
    key = (os.path.abspath(home), os.path.abspath(cached))
    try:
        if not os.path.lexists(cached) and key in _TAKEN:
            return _outcome(_TAKEN[key])
        try:
            outcome: Path | UploadError = store(home, cached, cached.name)
        except UploadError as exc:
            outcome = exc
        _TAKEN[key] = outcome
        if len(_TAKEN) > _TAKEN_KEPT:
            _TAKEN.pop(next(iter(_TAKEN)), None)
        return _outcome(outcome)
    finally:
        discard(cached, cache_root)


def _outcome(outcome: Path | UploadError) -> Path:
    if isinstance(outcome, UploadError):
        raise UploadError(outcome.message)
    if not outcome.is_file():
        raise UploadError(f"{outcome.name}: the stored copy was removed; upload the file again")
    return outcome


def discard(cached: Path, cache_root: Path) -> None:
    """Delete ``cached`` and then its folder if empty, but only inside ``cache_root`` (Gradio's cache)."""
    root, cached = cache_root.resolve(), Path(os.path.abspath(cached))
    parent = cached.parent.resolve()
    if not parent.is_relative_to(root):
        return
    cached.unlink(missing_ok=True)
    if parent != root:
        try:
            parent.rmdir()
        except OSError:  # not empty: another upload of the same content still sits there
            pass


def _uploads_folder(home: Path) -> Path:
    home = home.resolve()
    folder = home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink() or not folder.resolve().is_relative_to(home):
        raise UploadError(f"{folder} must be a folder inside {home}, not a link out of it; remove the link")
    return folder


def _copy_checked(source: Path, target: Path, name: str, fmt: str) -> str:
    """Copy ``source`` (never through a link) to ``target``, checking size and content; returns its sha256."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UploadError(f"{name}: cannot open it ({exc.strerror}); links are not followed") from None
    limit, digest, size = max_bytes(), hashlib.sha256(), 0
    text, head = (TextCheck() if fmt != "parquet" else None), b""
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise UploadError(f"{name}: not a regular file")
        out_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(out_fd, "wb") as out:
            while chunk := src.read(CHUNK):
                if size == 0 and fmt == "parquet" and not chunk.startswith(b"PAR1"):
                    raise UploadError(f"{name}: {_what(chunk, 'not a Parquet file')}")
                size += len(chunk)
                if size > limit:
                    raise UploadError(f"{name}: larger than the upload limit of {limit // 2**20} MB")
                head = head or chunk[:16]
                if text is not None:
                    _refuse_text(name, head, fmt, text.feed(chunk))
                digest.update(chunk)
                out.write(chunk)
    if size == 0:
        raise UploadError(f"{name}: the file is empty")
    if text is not None:
        _refuse_text(name, head, fmt, text.finish())
    elif not _ends_like_parquet(target):
        raise UploadError(f"{name}: not a Parquet file (it does not end with the PAR1 marker)")
    return digest.hexdigest()


def _what(head: bytes, otherwise: str) -> str:
    """What a file that failed a check is, from its first bytes, and what to do instead."""
    kind = next((what for magic, what in MAGIC.items() if head.startswith(magic)), None)
    return f"this is {kind}; export the table as CSV or JSONL and upload that" if kind else otherwise


def _ends_like_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 8:
            return False
        f.seek(-4, os.SEEK_END)
        return f.read(4) == b"PAR1"


def _refuse_text(name: str, head: bytes, fmt: str, bad: tuple[str, int, int | None] | None) -> None:
    """An upload that is not UTF-8 text (datafiles.TextCheck's answer): say what it looks like instead."""
    if bad is None:
        return
    what, line, _ = bad
    otherwise = {
        "nul": f"binary data (a NUL byte on line {line}), not a {fmt} table",
        "utf8": f"not UTF-8 text (line {line}); re-save it as UTF-8 (Excel: 'CSV UTF-8')",
        "end": "not UTF-8 text (it ends inside a character)",
    }[what]
    raise UploadError(f"{name}: {_what(head, otherwise)}") from None


def _check_json(path: Path, name: str, fmt: str) -> None:
    """JSONL: the first record parses. JSON: that too (JSON lines), or else the whole file parses, a list
    element by element (datafiles.json_array: a 200 MB list never sits in memory as Python objects)."""
    if fmt not in ("json", "jsonl"):
        return
    with path.open(encoding="utf-8-sig") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        json.loads(first)
        return
    except json.JSONDecodeError as exc:
        if fmt == "jsonl":
            message = f"{name}: the first line is not JSON ({exc.msg}); write one object per line"
            raise UploadError(message) from None
    try:
        if first.lstrip().startswith("["):
            for _ in json_array(path):
                pass
        else:
            json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UploadError(f"{name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
