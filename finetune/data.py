"""Read a dataset (bundled sample, local file or Hub id), detect its layout and convert it for training.

    python -c "from finetune import data as d; print(d.preview(d.DatasetConfig(path='builtin:sample-chat')))"

``dataset.path`` is ``builtin:NAME`` (a sample under ``presets/data/``), a local CSV/TSV/JSON/JSONL/Parquet/
TXT file, or a Hub id ``org/name``. :func:`prepare` turns the records into what the trainer reads: a
``messages`` column for task sft (never pre-rendered text: TRL applies the chat template itself, and a
rendered string would get a second BOS and an extra EOS), ``text`` for task text, ``text`` + integer
``label`` for classification.
Every problem is a :class:`DataError` carrying the config path to show it next to, and a way to fix it.
Records are converted as Python lists: simple, and fast enough for fine-tuning-sized data (~1M records).
"""

from __future__ import annotations

import codecs
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from pandas.errors import EmptyDataError, ParserError

from finetune.config import ColumnMap, DatasetConfig

DATA_DIR = Path(__file__).resolve().parent.parent / "presets" / "data"
# Arrow files `datasets` writes while reading local files: cheap to rebuild, so kept out of the repo and of
# the user's Hub cache. Hub datasets use the normal HF cache so their downloads are shared.
CACHE_DIR = Path(tempfile.gettempdir()) / "tuneboard-datasets"
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
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
ROLES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}

# Per layout: role -> column names (lower case) that play it, in order of preference. Detection tries the
# layouts in this order, so instruction/input/output is alpaca before input/output is prompt/completion.
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "messages": {"messages": ("messages", "conversations"), "system": ("system",)},
    "alpaca": {
        "instruction": ("instruction",),
        "input": ("input",),
        "output": ("output",),
        "system": ("system",),
    },
    "prompt_completion": {
        "prompt": ("prompt", "question", "input"),
        "completion": ("completion", "answer", "output"),
        "system": ("system",),
    },
    "classification": {"text": ("text",), "label": ("label",)},
    "text": {"text": ("text",)},
}
REQUIRED = {
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "classification": ("text", "label"),
    "text": ("text",),
}
TASK_LAYOUTS = {
    "sft": ("messages", "alpaca", "prompt_completion"),
    "text": ("text", "classification"),
    "classification": ("classification",),
}


class DataError(ValueError):
    """A dataset problem: ``field`` is the config path (``dataset.columns.label``); ``message``, the fix."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass
class Prepared:
    """Records ready for the trainer; ``n_records`` counts train + eval after dropping unusable records."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    layout: str
    columns: ColumnMap
    label_names: list[str] | None
    n_records: int
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def builtin_names() -> list[str]:
    """Names usable as ``builtin:NAME``."""
    return sorted(p.stem for p in DATA_DIR.iterdir() if p.suffix.lower() in FORMATS)


def load(cfg: DatasetConfig) -> datasets.Dataset:
    """The records as stored (no layout conversion, ``max_records`` not applied)."""
    source, fmt = resolve_source(cfg)
    ds = _load_hub(source, cfg) if fmt == "hub" else _load_file(Path(source), fmt)
    if len(ds) == 0 or not ds.column_names:
        raise DataError("dataset.path", f"{source} holds no records; add some or pick another file")
    renames = {c: c.replace("\ufeff", "").strip() for c in ds.column_names}
    renames = {old: new for old, new in renames.items() if old != new and new}
    return ds.rename_columns(renames) if renames else ds


def resolve_source(cfg: DatasetConfig) -> tuple[str, str]:
    """(path or Hub id, format) for ``dataset.path``; format is a FORMATS value or ``hub``."""
    raw = cfg.path.strip()
    if cfg.format == "hub":
        return raw, "hub"
    if raw.startswith("builtin:"):
        path = _builtin(raw.removeprefix("builtin:"))
    else:
        path = Path(raw).expanduser()
        if not path.exists():
            if HUB_ID.match(raw) and path.suffix.lower() not in FORMATS:
                return raw, "hub"
            raise DataError(
                "dataset.path",
                f"file {raw} does not exist (relative paths start at {Path.cwd()}); check the path, "
                "or give a Hub dataset as org/name",
            )
        if path.is_dir():
            raise DataError("dataset.path", f"{raw} is a folder; point dataset.path at a data file inside it")
    fmt = cfg.format if cfg.format != "auto" else FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            "dataset.format",
            f"cannot tell the format of {path.name} from its extension; rename it to one of "
            f"{', '.join(FORMATS)} or set dataset.format",
        )
    return str(path), fmt


def _builtin(name: str) -> Path:
    found = sorted(p for p in DATA_DIR.glob(f"{name}.*") if p.suffix.lower() in FORMATS)
    if not found:
        raise DataError("dataset.path", f"no bundled dataset {name!r}; bundled: {', '.join(builtin_names())}")
    return found[0]


def _load_hub(repo_id: str, cfg: DatasetConfig) -> datasets.Dataset:
    try:
        return datasets.load_dataset(repo_id, name=cfg.subset, split=cfg.split)
    except Exception as exc:  # network, auth, unknown subset or split: one clear message, no traceback
        if datasets.config.HF_HUB_OFFLINE:  # the id may be right: what is missing is the network
            raise DataError(
                "dataset.path",
                f"the Hub dataset {repo_id!r} is not in the local cache and Hub downloads are off "
                "(HF_HUB_OFFLINE is set): download it while online, or save it as a file and give its path",
            ) from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            "dataset.path",
            f"could not load the Hub dataset {repo_id!r}: {reason}. Check the id, dataset.subset and "
            "dataset.split, the network (HF_HUB_OFFLINE must be unset), and HF_TOKEN for a private or gated "
            "dataset",
        ) from exc


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


def _load_with_datasets(path: Path, fmt: str) -> datasets.Dataset:
    builder, options = {
        "csv": ("csv", CSV_OPTIONS),
        "tsv": ("csv", {**CSV_OPTIONS, "delimiter": "\t"}),
        "jsonl": ("json", {}),
        "parquet": ("parquet", {}),
        "txt": ("text", {"encoding": "utf-8-sig"}),
    }[fmt]
    ds = datasets.load_dataset(
        builder, data_files=str(path), split="train", cache_dir=str(CACHE_DIR), **options
    )
    if fmt == "txt":  # blank lines separate paragraphs; they are not records
        ds = ds.filter(lambda row: bool(row["text"].strip()))
    if fmt in ("csv", "tsv") and "__index_level_0__" in ds.column_names:  # pandas' reading of longer rows
        raise DataError(
            "dataset.path",
            f"the rows of {path.name} have more fields than its header; name every column in the header, "
            "or remove the separator at the end of each row",
        )
    return ds


def _load_json(path: Path) -> datasets.Dataset:
    # Parsed here rather than by `datasets`, which turns a single object into one record and reports no lines.
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


def _check_utf8(path: Path) -> None:
    """Fail with the line of the first byte that is not UTF-8 (pyarrow's JSON reader lets some through)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
                line += chunk.count(b"\n")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        line += exc.object.count(b"\n", 0, exc.start)
        raise DataError(
            "dataset.path",
            f"{path.name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); re-save it "
            "as UTF-8 (Excel: 'CSV UTF-8'; text editors: encoding UTF-8)",
        ) from None


# ---------------------------------------------------------------- layout


def detect_layout(column_names: list[str], prefer: tuple[str, ...] = ()) -> tuple[str, ColumnMap]:
    """The layout the column names suggest (case-insensitive), trying ``prefer`` first, and its ColumnMap."""
    for layout in (*prefer, *(name for name in LAYOUTS if name not in prefer)):
        roles = _match(column_names, LAYOUTS[layout])
        if all(role in roles for role in REQUIRED[layout]):
            return layout, ColumnMap(**roles)
    if len(column_names) == 1:
        return "text", ColumnMap(text=column_names[0])
    raise DataError(
        "dataset.layout",
        f"cannot tell how records are laid out from the columns {', '.join(column_names)}; expected "
        "messages, instruction/input/output, prompt/completion or text (+ label); set dataset.layout and "
        "dataset.columns",
    )


def resolve_layout(
    column_names: list[str], cfg: DatasetConfig, task: str | None = None
) -> tuple[str, ColumnMap]:
    """Layout and columns: ``cfg.layout`` / ``cfg.columns`` where set, detection for the rest.

    Detection tries the layouts ``task`` can train on first, so a file with both a ``messages`` and a ``text``
    column trains on ``text`` under task text.
    """
    explicit = {
        role: _find_column(column_names, role, name)
        for role, name in cfg.columns.model_dump().items()
        if name
    }
    if cfg.layout == "auto" and not explicit:
        return detect_layout(column_names, TASK_LAYOUTS.get(task or "", ()))
    if cfg.layout != "auto":
        candidates = [cfg.layout]
    else:  # the layouts that use every mapped role
        candidates = [name for name, roles in LAYOUTS.items() if set(explicit) <= set(roles)]
    if not candidates:
        raise DataError(
            "dataset.columns",
            f"the mapped roles {', '.join(explicit)} do not belong to one layout; map fewer roles",
        )
    for layout in candidates:
        extra = sorted(set(explicit) - set(LAYOUTS[layout]))
        if extra:
            raise DataError(
                f"dataset.columns.{extra[0]}",
                f"layout {layout} has no {extra[0]} column; remove it or change dataset.layout",
            )
        roles = _with_detected(column_names, layout, explicit)
        if all(role in roles for role in REQUIRED[layout]):
            return layout, ColumnMap(**roles)
    layout = candidates[0]
    roles = _with_detected(column_names, layout, explicit)
    role = next(r for r in REQUIRED[layout] if r not in roles)
    raise DataError(
        f"dataset.columns.{role}",
        f"layout {layout} needs a {role} column and none of the columns ({', '.join(column_names)}) is named "
        f"{' or '.join(LAYOUTS[layout][role])}; set dataset.columns.{role}",
    )


def _with_detected(column_names: list[str], layout: str, explicit: dict[str, str]) -> dict[str, str]:
    """The mapped roles plus those found by name among the columns not mapped already."""
    free = [name for name in column_names if name not in explicit.values()]
    return {**_match(free, LAYOUTS[layout]), **explicit}


def _match(column_names: list[str], roles: dict[str, tuple[str, ...]]) -> dict[str, str]:
    lower = {name.lower(): name for name in reversed(column_names)}  # first column wins a case-only clash
    found: dict[str, str] = {}
    for role, wanted in roles.items():
        name = next((lower[w] for w in wanted if w in lower and lower[w] not in found.values()), None)
        if name is not None:
            found[role] = name
    return found


def _find_column(column_names: list[str], role: str, name: str) -> str:
    if name in column_names:
        return name
    same = [c for c in column_names if c.lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    raise DataError(
        f"dataset.columns.{role}", f"there is no column {name!r}; the columns are: {', '.join(column_names)}"
    )


# ---------------------------------------------------------------- conversion


def prepare(cfg: DatasetConfig, task: str, *, system_prompt: str | None = None, seed: int = 42) -> Prepared:
    """Load, check and convert the records for ``task`` (sft / text / classification), then split off eval."""
    ds = load(cfg)
    if cfg.max_records:
        ds = ds.select(range(min(cfg.max_records, len(ds))))
    layout, columns = resolve_layout(ds.column_names, cfg, task)
    _check_task(task, layout, ds.column_names)
    used = list(dict.fromkeys(c for c in columns.model_dump().values() if c))
    required = REQUIRED[layout if task == "sft" else task]
    warnings: list[str] = []
    rows = _drop_empty(list(enumerate(ds.select_columns(used).to_list())), columns, required, warnings)
    label_names = None
    if task == "sft":
        out = {"messages": _conversations(rows, layout, columns, system_prompt, warnings)}
    elif task == "text":
        out = {"text": [_text(row[columns.text], "text", i) for i, row in rows]}
    else:
        out, label_names = _classes(rows, columns, ds.features[columns.label], warnings)
    full = datasets.Dataset.from_dict(out)
    train, held_out = _split(full, cfg.validation_split, seed)
    return Prepared(train, held_out, layout, columns, label_names, len(full), warnings)


def _check_task(task: str, layout: str, column_names: list[str]) -> None:
    if task not in TASK_LAYOUTS:
        raise DataError("task", f"unknown task {task!r}; use one of {', '.join(TASK_LAYOUTS)}")
    if layout in TASK_LAYOUTS[task]:
        return
    if task == "classification":
        raise DataError(
            "dataset.columns.label",
            f"task classification needs text and label columns; the columns are {', '.join(column_names)}: "
            "set dataset.columns.text and dataset.columns.label",
        )
    if task == "text":
        raise DataError(
            "task",
            f"task text trains on plain text, but these records are {layout}; use task sft for conversations "
            "and instructions, or set dataset.columns.text to a column of plain text",
        )
    raise DataError(
        "task",
        f"task sft needs conversations, instruction/output or prompt/completion, but these records are "
        f"{layout}; use task text or classification, or set dataset.columns.prompt and "
        "dataset.columns.completion",
    )


def _drop_empty(
    rows: list[tuple[int, dict[str, Any]]], columns: ColumnMap, required: tuple[str, ...], warnings: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    """Rows whose required columns all hold something; an entirely empty column is an error."""
    keep = [True] * len(rows)
    for role in required:
        name = getattr(columns, role)
        empty = [_is_blank(row[name]) for _, row in rows]
        if all(empty):
            raise DataError(
                f"dataset.columns.{role}",
                f"column {name!r} is empty in every record; set dataset.columns.{role} to a column with "
                "content",
            )
        if any(empty):
            warnings.append(f"dropped {sum(empty)} records with an empty {name!r}")
            keep = [k and not e for k, e in zip(keep, empty, strict=True)]
    return [row for row, k in zip(rows, keep, strict=True) if k]


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or value == []


def _text(value: Any, role: str, index: int) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    raise DataError(f"dataset.columns.{role}", f"record {index}: expected text, got a {type(value).__name__}")


def _conversations(
    rows: list[tuple[int, dict[str, Any]]],
    layout: str,
    columns: ColumnMap,
    system_prompt: str | None,
    warnings: list[str],
) -> list[list[dict[str, str]]]:
    out, no_reply = [], 0
    for index, row in rows:
        messages = _record_messages(index, row, layout, columns)
        system = _text(row.get(columns.system), "system", index).strip() if columns.system else ""
        if (system or system_prompt) and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": system or system_prompt or ""})
        if any(m["role"] == "assistant" for m in messages):
            out.append(messages)
        else:
            no_reply += 1
    if not out:
        raise DataError(
            "dataset.columns.messages", "no conversation has an assistant turn, so nothing can be learned"
        )
    if no_reply:
        warnings.append(f"dropped {no_reply} conversations with no assistant turn")
    return out


def _record_messages(
    index: int, row: dict[str, Any], layout: str, columns: ColumnMap
) -> list[dict[str, str]]:
    if layout == "messages":
        return _normalise(index, row[columns.messages])
    if layout == "alpaca":
        user = _text(row[columns.instruction], "instruction", index)
        extra = _text(row.get(columns.input), "input", index) if columns.input else ""
        user = f"{user}\n\n{extra}" if extra.strip() else user
        reply = _text(row[columns.output], "output", index)
    else:
        user = _text(row[columns.prompt], "prompt", index)
        reply = _text(row[columns.completion], "completion", index)
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def _normalise(index: int, value: Any) -> list[dict[str, str]]:
    """OpenAI {role, content} or ShareGPT {from, value} messages -> role/content, system/user/assistant."""
    field_path = "dataset.columns.messages"
    if isinstance(value, str):  # a conversation stored as JSON text, e.g. in a CSV cell
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise DataError(field_path, f"record {index}: the text is not a JSON list of messages") from None
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise DataError(field_path, f"record {index}: expected a list of {{role, content}} messages")
    out = []
    for number, message in enumerate(value):
        role = message.get("role") or message.get("from")
        mapped = ROLES.get(str(role).lower()) if role is not None else None
        if mapped is None:
            raise DataError(
                field_path,
                f"record {index}, message {number}: unknown role {role!r}; use system, user or assistant "
                "(ShareGPT: system, human, gpt)",
            )
        content = next((message[k] for k in ("content", "value") if message.get(k) is not None), "")
        out.append({"role": mapped, "content": _text(content, "messages", index)})
    return out


def _classes(
    rows: list[tuple[int, dict[str, Any]]], columns: ColumnMap, feature: Any, warnings: list[str]
) -> tuple[dict[str, list[Any]], list[str]]:
    """Texts and integer labels, with the class names: string labels get ids in sorted order."""
    texts = [_text(row[columns.text], "text", i) for i, row in rows]
    raw = [row[columns.label] for _, row in rows]
    if isinstance(feature, datasets.ClassLabel):
        return {"text": texts, "label": raw}, list(feature.names)
    if all(isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer()) for v in raw):
        ids = [int(v) for v in raw]
        if min(ids) < 0:
            raise DataError("dataset.columns.label", f"label {min(ids)} is negative; class ids start at 0")
        unused = sorted(set(range(max(ids) + 1)) - set(ids))
        if unused:  # ids are kept, so the model still gets max + 1 outputs
            warnings.append(
                f"label ids {unused[:10]} never occur; the model still gets {max(ids) + 1} classes"
            )
        return {"text": texts, "label": ids}, [str(k) for k in range(max(ids) + 1)]
    if any(isinstance(v, (list, dict)) for v in raw):
        raise DataError("dataset.columns.label", "labels must be class names or integer ids, not lists")
    names = sorted({str(v).strip() for v in raw})
    index = {name: k for k, name in enumerate(names)}
    return {"text": texts, "label": [index[str(v).strip()] for v in raw]}, names


def _split(
    ds: datasets.Dataset, fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    if fraction <= 0:
        return ds, None
    n_eval = max(1, round(len(ds) * fraction))
    if n_eval >= len(ds):
        raise DataError(
            "dataset.validation_split",
            f"holding out {fraction:g} of {len(ds)} records leaves none for training; lower it or set it "
            "to 0",
        )
    parts = ds.train_test_split(test_size=n_eval, seed=seed)
    return parts["train"], parts["test"]


# ---------------------------------------------------------------- for the dashboard


def preview(cfg: DatasetConfig, n: int = 20) -> dict[str, Any]:
    """Columns, the first ``n`` rows (long strings cut), the layout and mapping, and the record count.

    A layout that cannot be resolved is not an error here: ``layout`` is None and ``error`` holds
    {field, message}, so the page can still show the columns to map.
    """
    ds = load(cfg)
    layout, mapping, error = None, {}, None
    try:
        layout, columns = resolve_layout(ds.column_names, cfg)
        mapping = columns.model_dump(exclude_none=True)
    except DataError as exc:
        error = {"field": exc.field, "message": exc.message}
    rows = [_shorten(row) for row in ds.select(range(min(n, len(ds)))).to_list()]
    return {
        "columns": ds.column_names,
        "rows": rows,
        "layout": layout,
        "mapping": mapping,
        "n_records": len(ds),
        "error": error,
    }


def _shorten(value: Any, limit: int = 300) -> Any:
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def length_stats(lengths: list[int], max_length: int) -> dict[str, Any]:
    """Summary of token counts per record (tokenised by the caller) and how many exceed ``max_length``."""
    if not lengths:
        zero = {
            "count": 0,
            "min": 0,
            "mean": 0.0,
            "p50": 0.0,
            "p90": 0.0,
            "p99": 0.0,
            "max": 0,
            "over_max": 0,
        }
        return {**zero, "histogram": {"edges": [], "counts": []}}
    arr = np.asarray(lengths)
    counts, edges = np.histogram(arr, bins=20)
    p50, p90, p99 = (float(p) for p in np.percentile(arr, [50, 90, 99]))
    return {
        "count": len(lengths),
        "min": int(arr.min()),
        "mean": float(arr.mean()),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": int(arr.max()),
        "over_max": int((arr > max_length).sum()),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
