"""Read a data file or a Hub dataset into a ``datasets.Dataset``: formats, encodings, JSON in pieces, cache.

    python -c "from finetune import datafiles as f, config as c; print(f.load(c.DatasetConfig()))"

``dataset.path`` is ``builtin:NAME`` (a sample under ``presets/data/``), a local CSV/TSV/JSON/JSONL/Parquet/
TXT file, or a Hub id ``org/name``; :func:`load` returns the records as stored (finetune/data.py maps and
converts them). Files are read a piece at a time, so a big one never sits in memory whole. Every problem is a
:class:`DataError` carrying the config path to show it next to, and a way to fix it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
from pandas.errors import EmptyDataError, ParserError

from finetune import paths
from finetune.config import DatasetConfig
from finetune.errors import DataError

DATA_DIR = Path(__file__).resolve().parent.parent / "presets" / "data"
# Arrow copies `datasets` writes of local files live in HOME/.cache/datasets (cache_dir): readable by this
# user only, since they hold the tables' text; cheap to rebuild, so an entry unused for CACHE_MAX_AGE is
# deleted. Hub datasets use the normal HF cache so their downloads are shared.
CACHE_MAX_AGE = 24 * 3600.0
_CLEANED: list[float] = []  # when this process last swept the cache
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".txt": "txt",
}
# utf-8-sig drops a BOM (Excel writes one); only empty cells are missing, so "NA" or "None" stays text.
CSV_OPTIONS = {"encoding": "utf-8-sig", "keep_default_na": False, "na_values": [""]}


def builtin_names() -> list[str]:
    """Names usable as ``builtin:NAME``."""
    return sorted(p.stem for p in DATA_DIR.iterdir() if p.suffix.lower() in FORMATS)


def load(cfg: DatasetConfig) -> datasets.Dataset | datasets.IterableDataset:
    """The records as stored (no layout conversion, ``max_records`` not applied); with ``streaming``, an
    ``IterableDataset`` that reads them as they are asked for (its column names are set)."""
    source, fmt = resolve_source(cfg)
    if cfg.streaming:
        ds = _stream(source, fmt, cfg)
    else:
        ds = _load_hub(source, cfg) if fmt == "hub" else _load_file(Path(source), fmt)
        if len(ds) == 0 or not ds.column_names:
            raise DataError("dataset.path", f"{source} holds no records; add some or pick another file")
    renames = {c: c.replace("\ufeff", "").strip() for c in ds.column_names}
    renames = {old: new for old, new in renames.items() if old != new and new}
    return ds.rename_columns(renames) if renames else ds


def _stream(source: str, fmt: str, cfg: DatasetConfig) -> datasets.IterableDataset:
    """A Hub dataset, a folder of shards (the same call: datasets reads a local folder as a Hub repo) or one
    file, read as a stream; nothing is downloaded or converted up front. Its first record is read here, so a
    wrong id or an empty source is said now, and the column names are known."""
    try:
        if fmt in ("hub", "folder"):
            ds = datasets.load_dataset(source, name=cfg.subset, split=cfg.split, streaming=True)
        else:
            builder, options = _builder(Path(source), "jsonl" if fmt == "json" else fmt)
            ds = datasets.load_dataset(builder, data_files=source, split="train", streaming=True, **options)
        first = next(iter(ds.take(1)), None)
    except Exception as exc:  # noqa: BLE001 - network, auth, a bad file: one clear message, no traceback
        if fmt == "hub":
            raise _hub_problem(source, exc) from exc
        raise _explain(exc, Path(source), fmt) from exc
    if first is None:
        raise DataError("dataset.path", f"{source} holds no records; add some or pick another source")
    if ds.column_names is None:  # JSON lines name their columns only in the records
        ds = ds.select_columns(list(first))
    return ds.filter(lambda row: bool(row["text"].strip())) if fmt == "txt" else ds


def resolve_source(cfg: DatasetConfig) -> tuple[str, str]:
    """(path or Hub id, format) for ``dataset.path``; format is a FORMATS value or ``hub``."""
    raw = cfg.path.strip()
    if cfg.format == "hub":
        if not paths.is_hub_id(raw, org=False):
            raise DataError(
                "dataset.path",
                f"{raw!r} is not a Hub dataset id (org/name); for a local file set dataset.format to auto",
            )
        return raw, "hub"
    if raw.startswith("builtin:"):
        path = _builtin(raw.removeprefix("builtin:"))
    else:
        path = Path(raw).expanduser()
        if paths.is_system(path):
            raise DataError("dataset.path", paths.system_refusal(raw))
        if not path.exists():
            if paths.is_hub_id(raw) and path.suffix.lower() not in FORMATS:
                return raw, "hub"
            raise DataError(
                "dataset.path",
                f"file {raw} does not exist (relative paths start at {Path.cwd()}); check the path, "
                "or give a Hub dataset as org/name",
            )
        if path.is_dir() and cfg.streaming:
            return str(path), "folder"  # shards, read as datasets reads a Hub repo's files
        if path.is_dir():
            raise DataError(
                "dataset.path",
                f"{raw} is a folder; point dataset.path at a data file inside it, or turn on "
                "dataset.streaming to read its Parquet/JSONL shards as one dataset",
            )
    fmt = cfg.format if cfg.format != "auto" else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            "dataset.format",
            f"cannot tell the format of {path.name} from its extension; rename it to one of "
            f"{', '.join(FORMATS)} or set dataset.format",
        )
    return str(path), fmt


def _builtin(name: str) -> Path:
    if name not in builtin_names():  # a name, never a pattern or a path ('../x')
        raise DataError("dataset.path", f"no bundled dataset {name!r}; bundled: {', '.join(builtin_names())}")
    return sorted(p for p in DATA_DIR.glob(f"{name}.*") if p.suffix.lower() in FORMATS)[0]


def _load_hub(repo_id: str, cfg: DatasetConfig) -> datasets.Dataset:
    try:
        return datasets.load_dataset(repo_id, name=cfg.subset, split=cfg.split)
    except Exception as exc:  # network, auth, unknown subset or split: one clear message, no traceback
        raise _hub_problem(repo_id, exc) from exc


def _hub_problem(repo_id: str, exc: BaseException) -> DataError:
    if datasets.config.HF_HUB_OFFLINE:  # the id may be right: what is missing is the network
        return DataError(
            "dataset.path",
            f"the Hub dataset {repo_id!r} is not in the local cache and Hub downloads are off "
            "(HF_HUB_OFFLINE is set): download it while online, or save it as a file and give its path",
        )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(
        "dataset.path",
        f"could not load the Hub dataset {repo_id!r}: {reason}. Check the id, dataset.subset and "
        "dataset.split, the network (HF_HUB_OFFLINE must be unset), and HF_TOKEN for a private or gated "
        "dataset",
    )


def _load_file(path: Path, fmt: str) -> datasets.Dataset:
    if _is_empty(path):
        raise DataError("dataset.path", f"{path.name} is empty; add records or pick another file")
    if fmt != "parquet":
        _check_utf8(path)
    try:
        return _load_json(path) if fmt == "json" else _load_with_datasets(path, fmt)
    except DataError:
        raise
    except Exception as exc:  # `datasets` wraps the parser's error; explain its root cause instead
        raise _explain(exc, path, fmt) from exc


def _builder(path: Path, fmt: str) -> tuple[str, dict[str, Any]]:
    """The ``datasets`` builder for a file format, and its options."""
    return {
        "csv": ("csv", {**CSV_OPTIONS, "delimiter": csv_delimiter(path)}),
        "tsv": ("csv", {**CSV_OPTIONS, "delimiter": "\t"}),
        "jsonl": ("json", {}),
        "parquet": ("parquet", {}),
        "txt": ("text", {"encoding": "utf-8-sig"}),
    }[fmt]


def _load_with_datasets(path: Path, fmt: str) -> datasets.Dataset:
    builder, options = _builder(path, fmt)
    ds = datasets.load_dataset(
        builder, data_files=str(path), split="train", cache_dir=str(cache_dir()), **options
    )
    _touch(ds)
    if fmt == "txt":  # blank lines separate paragraphs; they are not records
        ds = ds.filter(lambda row: bool(row["text"].strip()))
    if fmt in ("csv", "tsv") and "__index_level_0__" in ds.column_names:  # pandas' reading of longer rows
        raise DataError(
            "dataset.path",
            f"the rows of {path.name} have more fields than its header; name every column in the header, "
            "or remove the separator at the end of each row",
        )
    return ds


DELIMITERS = ",;\t|"  # Excel writes ';' where the decimal mark is a comma (much of Europe)


def csv_delimiter(path: Path, probe: int = 64 * 1024) -> str:
    """The separator of a .csv file: ',' unless its header and first rows split evenly on another one."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        sample = f.read(probe)
    lines = sample.splitlines()[:20]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")) and len(sample) == probe:
        lines = lines[:-1]  # the last line may be cut off
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    header = lines[0] if lines else ""
    return found if header.count(found) > header.count(",") else ","


def cache_dir() -> Path:
    """HOME/.cache/datasets, private to this user; swept of stale entries once an hour."""
    folder = paths.private_dir(paths.home().resolve() / ".cache" / "datasets")
    if not _CLEANED or time.time() - _CLEANED[-1] > 3600:
        _CLEANED.append(time.time())
        clean_cache(folder)
    return folder


def clean_cache(folder: Path, max_age: float = CACHE_MAX_AGE) -> list[Path]:
    """Delete the entries (``<builder>/<config>-<hash>``) and lock files untouched for ``max_age`` seconds.

    A run reads its data when it starts and never again, and a preview touches what it reads (_touch), so
    what is left untouched is what nothing needs. Returns what was deleted.
    """
    cutoff, gone = time.time() - max_age, []
    entries = [e for builder in folder.iterdir() if builder.is_dir() for e in builder.iterdir()]
    for entry in entries + [f for f in folder.iterdir() if f.is_file()]:
        try:
            newest = max([entry.stat().st_mtime, *(f.stat().st_mtime for f in entry.rglob("*"))])
        except OSError:  # removed meanwhile by another process
            continue
        if newest < cutoff:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            gone.append(entry)
    return gone


def _touch(ds: datasets.Dataset) -> None:
    """Mark the Arrow files just read as in use, so clean_cache keeps them."""
    for cached in ds.cache_files:
        try:
            os.utime(cached["filename"])
        except OSError:
            pass


def _load_json(path: Path) -> datasets.Dataset:
    # Parsed here rather than by `datasets`, which turns a single object into one record and reports no lines.
    # A list of records or JSON Lines is read a piece at a time (a 200 MB file would take gigabytes as Python
    # objects); only a wrapper object ({"data": [...]}) or a file that does not parse is read whole.
    shape = _json_shape(path)
    if shape == "lines":
        return _load_with_datasets(path, "jsonl")
    if shape == "array":
        try:
            return _load_json_array(path)
        except json.JSONDecodeError:
            pass  # the whole-file parse below says where
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1:  # one object per line: JSON Lines named .json
            return _load_with_datasets(path, "jsonl")
        raise DataError(
            "dataset.path",
            f"{path.name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from None
    if isinstance(data, dict):
        wrapper = next((k for k in ("data", "train") if isinstance(data.get(k), list)), None)
        if wrapper is None:
            raise DataError(
                "dataset.path",
                f"{path.name} holds one JSON object (keys: {', '.join(list(data)[:5])}), not a list of "
                "records; write it as [{...}, {...}] or as JSON Lines (.jsonl, one object per line)",
            )
        data = data[wrapper]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(
            "dataset.path", f'{path.name} must hold a list of objects like [{{"text": ...}}, ...]'
        )
    # Every key, not only the first record's (which is all Dataset.from_list would keep).
    names = list(dict.fromkeys(k for record in data for k in record))
    return datasets.Dataset.from_dict({n: [record.get(n) for record in data] for n in names})


def _json_shape(path: Path, probe: int = 1 << 20) -> str:
    """ "array" ([...]), "lines" (one object, then another), or "object" (anything else: parse it whole)."""
    with path.open(encoding="utf-8-sig") as f:
        head = f.read(probe).lstrip()
    if head.startswith("["):
        return "array"
    try:
        _, end = json.JSONDecoder().raw_decode(head)
    except json.JSONDecodeError:
        return "object"
    return "lines" if head[end:].lstrip().startswith("{") else "object"


def _load_json_array(path: Path) -> datasets.Dataset:
    """A JSON list of records through a JSON Lines copy in the cache, with every record's keys in each row."""
    keys: dict[str, None] = {}
    for record in json_array(path):
        if not isinstance(record, dict):
            raise DataError(
                "dataset.path", f'{path.name} must hold a list of objects like [{{"text": ...}}, ...]'
            )
        keys.update(dict.fromkeys(record))
    info = path.stat()
    stamp = f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}".encode()
    copy = paths.private_dir(cache_dir() / "json-lines") / f"{hashlib.sha256(stamp).hexdigest()[:20]}.jsonl"
    if not copy.is_file():
        partial = copy.with_suffix(f".{os.getpid()}.partial")
        with partial.open("w", encoding="utf-8") as out:
            for record in json_array(path):
                out.write(json.dumps({k: record.get(k) for k in keys}, ensure_ascii=False) + "\n")
        os.replace(partial, copy)
    return _load_with_datasets(copy, "jsonl")


def json_array(path: Path, chunk: int = 1 << 20) -> Any:
    """The values of the top-level JSON list in ``path``, one at a time; JSONDecodeError (with the line in the
    whole file) when it is not one."""
    with path.open(encoding="utf-8-sig") as f:
        pieces = _Pieces(f, chunk)
        try:
            yield from _values(pieces)
        except json.JSONDecodeError as exc:
            exc.lineno += pieces.lines  # the line in the file, not in the piece held
            raise


def _values(r: _Pieces) -> Any:
    decoder = json.JSONDecoder()
    if r.next() != "[":
        raise json.JSONDecodeError("expected a list", r.buf, r.i)
    r.i += 1
    if r.next() == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(r.buf, r.i)
        except json.JSONDecodeError:
            if r.eof:
                raise
            r.more()  # the value goes on in the next piece
            continue
        if end == len(r.buf) and not r.eof:  # a number at the end of a piece may go on too
            r.more()
            continue
        yield value
        r.i = end
        separator = r.next()
        if separator == "]":
            return
        if separator != ",":
            raise json.JSONDecodeError("expected ',' or ']'", r.buf, r.i)
        r.i += 1
        r.next()


class _Pieces:
    """A text file read in growing pieces: ``buf[i:]`` is what is not consumed yet; ``lines`` counts the line
    breaks in what was dropped."""

    def __init__(self, file: Any, chunk: int):
        self.file, self.chunk, self.buf, self.i, self.eof, self.lines = file, chunk, "", 0, False, 0

    def more(self) -> None:
        piece = self.file.read(max(self.chunk, len(self.buf) - self.i))  # doubling: linear in its size
        self.eof = not piece
        self.lines += self.buf.count("\n", 0, self.i)
        self.buf, self.i = self.buf[self.i :] + piece, 0

    def next(self) -> str:
        """The next non-space character ("" at the end), reading on as needed."""
        while True:
            while self.i < len(self.buf) and self.buf[self.i].isspace():
                self.i += 1
            if self.i < len(self.buf) or self.eof:
                return self.buf[self.i : self.i + 1]
            self.more()


def _is_empty(path: Path) -> bool:
    if path.stat().st_size > 1024:
        return False
    return not path.read_bytes().removeprefix(codecs.BOM_UTF8).strip()


def _explain(exc: BaseException, path: Path, fmt: str) -> DataError:
    chain = [exc]
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(nxt)
    for err in chain:
        if isinstance(err, EmptyDataError):
            return DataError(
                "dataset.path", f"{path.name} has no header or rows; add records or pick another file"
            )
        if isinstance(err, ParserError):
            detail = str(err).split("C error: ")[-1].strip()
            return DataError(
                "dataset.path",
                f"{path.name} is not well-formed {fmt.upper()}: {detail}; every row needs as many fields as "
                "the header, and a field holding the separator or a line break must be quoted",
            )
    if fmt in ("json", "jsonl") and (bad := _bad_json_line(path)):
        return bad
    root = chain[-1]
    if fmt == "parquet":
        return DataError(
            "dataset.path", f"{path.name} is not a readable Parquet file ({root}); check how it was saved"
        )
    return DataError("dataset.path", f"could not read {path.name} as {fmt}: {type(root).__name__}: {root}")


def _bad_json_line(path: Path) -> DataError | None:
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            return DataError(
                "dataset.path",
                f"{path.name} line {number} is not valid JSON: {exc.msg} (column {exc.colno}); "
                "JSON Lines holds one complete object per line",
            )
        if not isinstance(value, dict):
            return DataError(
                "dataset.path", f'{path.name} line {number} is not a JSON object like {{"text": ...}}'
            )
    return None


class TextCheck:
    """Whether bytes fed chunk by chunk are UTF-8 text; shared by reading a file and storing an upload.

    ``feed`` and ``finish`` return None while all is well, else (what, line, byte): what is ``"nul"`` (a NUL
    byte, when ``nul`` is refused), ``"utf8"`` (a byte that is not UTF-8) or ``"end"`` (cut mid-character).
    """

    def __init__(self, *, nul: bool = False):
        self.refuse_nul, self.line = not nul, 1
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> tuple[str, int, int | None] | None:
        if self.refuse_nul and b"\x00" in chunk:
            return "nul", self.line + chunk.count(b"\n", 0, chunk.index(b"\x00")), 0
        try:
            self.decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            return "utf8", self.line + chunk.count(b"\n", 0, exc.start), chunk[exc.start]
        self.line += chunk.count(b"\n")
        return None

    def finish(self) -> tuple[str, int, int | None] | None:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "end", self.line, None
        return None


def _check_utf8(path: Path) -> None:
    """Fail with the line of the first byte that is not UTF-8 (pyarrow's JSON reader lets some through)."""
    check, bad = TextCheck(nul=True), None
    with path.open("rb") as f:
        while bad is None and (chunk := f.read(1 << 20)):
            bad = check.feed(chunk)
    bad = bad or check.finish()
    if bad:
        _, line, byte = bad
        where = f"byte 0x{byte:02x} on line {line}" if byte is not None else "it ends inside a character"
        raise DataError(
            "dataset.path",
            f"{path.name} is not UTF-8 text ({where}); re-save it as UTF-8 (Excel: 'CSV UTF-8'; "
            "text editors: encoding UTF-8)",
        )
