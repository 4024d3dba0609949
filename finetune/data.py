"""Map a dataset's columns to roles, detect its layout and convert its records for training; preview, stats.

    python -c "from finetune import data as d; print(d.preview(d.DatasetConfig(path='builtin:sample-chat')))"

Reading files and Hub ids is finetune/datafiles.py's (:func:`load`, :class:`DataError`, re-exported here as
the data layer's entry points). :func:`prepare` turns the records into what the trainer reads: a ``messages``
column for task sft (conversations, tokenized later by the sandboxed template renderer), ``text`` for task
text, ``text`` + integer ``label`` for classification. Every problem is a :class:`DataError` carrying the
config path to show it next to, and a way to fix it. Records are converted a batch at a time, as Python lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from finetune.config import ColumnMap, DatasetConfig
from finetune.datafiles import DataError, load

__all__ = ["DataError", "DatasetConfig", "Prepared", "load", "prepare", "records", "preview", "length_stats"]

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


@dataclass
class Prepared:
    """Records ready for the trainer, and how many there are.

    ``n_records`` counts every usable record (train + eval, after dropping unusable ones), ``n_train`` and
    ``n_eval`` the split. Without ``sample``, ``train``/``eval`` hold them all; with it (the page, ``plan``),
    ``train`` holds only the first ``sample`` records, unsplit, and ``eval`` is None: every record is still
    read, checked and counted, but not kept.
    """

    train: datasets.Dataset
    eval: datasets.Dataset | None
    layout: str
    columns: ColumnMap
    label_names: list[str] | None
    n_records: int
    warnings: list[str] = field(default_factory=list)
    n_train: int = 0
    n_eval: int = 0
    sampled: bool = False
    streamed: bool = False  # dataset.streaming: ``train`` is an IterableDataset; n_records counts those read
    head: datasets.Dataset | None = None  # a stream's first records, for the checks that look at some

    @property
    def first(self) -> datasets.Dataset:
        """The records the checks look at the first of: all of them, or a stream's first ones."""
        return self.head if self.head is not None else self.train


# ---------------------------------------------------------------- reading
# ---------------------------------------------------------------- layout


def detect_layout(column_names: list[str], prefer: tuple[str, ...] = ()) -> tuple[str, ColumnMap]:
    """The layout the column names suggest (case-insensitive), trying ``prefer`` first, and its ColumnMap."""
    for layout in (*prefer, *(name for name in LAYOUTS if name not in prefer)):
        roles = _match(column_names, LAYOUTS[layout])
        if all(role in roles for role in REQUIRED[layout]):
            return layout, ColumnMap(**roles)
    if len(column_names) == 1 and not _looks_unsplit(column_names[0]):
        return "text", ColumnMap(text=column_names[0])
    if len(column_names) == 1:
        raise DataError(
            "dataset.path",
            f"the file has one column, named {column_names[0]!r}: its header holds a separator, so the file "
            "was not split into columns; save it as CSV with commas (or TSV), or set dataset.format",
        )
    raise DataError(
        "dataset.layout",
        f"cannot tell how records are laid out from the columns {', '.join(column_names)}; expected "
        "messages, instruction/input/output, prompt/completion or text (+ label); set dataset.layout and "
        "dataset.columns",
        todo=True,
    )


def _looks_unsplit(name: str) -> bool:
    """A lone column whose name holds a separator: a table read with the wrong one."""
    return any(separator in name for separator in ";\t|")


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
    raise _unmapped(column_names, candidates[0], explicit)


def _unmapped(column_names: list[str], layout: str, explicit: dict[str, str]) -> DataError:
    """The error naming every column ``layout`` still needs mapped, at once (a choice to make: todo)."""
    roles = _with_detected(column_names, layout, explicit)
    missing = [
        (
            f"dataset.columns.{role}",
            f"layout {layout} needs a {role} column and none of the columns ({', '.join(column_names)}) is "
            f"named {' or '.join(LAYOUTS[layout][role])}; set dataset.columns.{role}",
        )
        for role in REQUIRED[layout]
        if role not in roles
    ]
    return DataError(*missing[0], more=missing[1:], todo=True)


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


def prepare(
    cfg: DatasetConfig,
    task: str,
    *,
    system_prompt: str | None = None,
    seed: int = 42,
    sample: int | None = None,
) -> Prepared:
    """Load, check and convert the records for ``task`` (sft / text / classification), then split off eval.

    Records are read in batches, so memory holds what is kept: everything for training, the first
    ``sample`` records for a preview of a file of any size.
    """
    if cfg.streaming:
        return _prepare_stream(cfg, task, system_prompt, sample)
    ds, layout, columns, required = _source(cfg, task)
    tally = _Tally({role: 0 for role in required})
    kept: list[dict[str, Any]] = []
    for _, record in _converted(ds, task, layout, columns, required, system_prompt, tally):
        if sample is None or len(kept) < sample:
            kept.append(record)
    warnings = tally.warnings(columns, required, task, len(ds))
    label_names = None
    if task == "classification":
        kept, label_names = _classes(kept, tally.labels, ds.features[columns.label], warnings)
    names = {"sft": ["messages"], "text": ["text"]}.get(task, ["text", "label"])
    full = datasets.Dataset.from_dict({n: [r[n] for r in kept] for n in names})
    n_eval = _eval_size(tally.usable, cfg.validation_split)
    common = {"layout": layout, "columns": columns, "label_names": label_names, "warnings": warnings}
    if sample is not None:
        n = tally.usable
        return Prepared(full, None, n_records=n, n_train=n - n_eval, n_eval=n_eval, sampled=True, **common)
    train, held_out = _split(full, n_eval, seed)
    return Prepared(train, held_out, n_records=len(full), n_train=len(train), n_eval=n_eval, **common)


def records(
    cfg: DatasetConfig, task: str, *, system_prompt: str | None = None, batch_size: int = 1000
) -> Iterator[tuple[int, int, list[dict[str, Any]]]]:
    """Every usable record, converted for ``task`` as :func:`prepare` converts it, ``batch_size`` at a time:
    (rows read so far, rows in all, the batch). Nothing is kept, so statistics can cover a file of any size.
    Run :func:`prepare` first: its errors and warnings about the records are not repeated here."""
    ds, layout, columns, required = _source(cfg, task)
    tally = _Tally({role: 0 for role in required})
    batch: list[dict[str, Any]] = []
    for index, record in _converted(ds, task, layout, columns, required, system_prompt, tally):
        batch.append(record)
        if len(batch) == batch_size:
            yield index + 1, len(ds), batch
            batch = []
    if batch:
        yield len(ds), len(ds), batch


def _source(cfg: DatasetConfig, task: str) -> tuple[datasets.Dataset, str, ColumnMap, tuple[str, ...]]:
    """The stored records (``max_records`` applied; a stream has none: config.py), their layout and columns,
    and the roles they need."""
    ds = load(cfg)
    if cfg.max_records and not cfg.streaming:
        ds = ds.select(range(min(cfg.max_records, len(ds))))
    layout, columns = resolve_layout(ds.column_names, cfg, task)
    _check_task(task, layout, ds.column_names)
    return ds, layout, columns, REQUIRED[layout if task == "sft" else task]


def _converted(
    ds: datasets.Dataset,
    task: str,
    layout: str,
    columns: ColumnMap,
    required: tuple[str, ...],
    system_prompt: str | None,
    tally: _Tally,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row index, record) of each usable row, read a batch at a time; ``tally`` counts what was dropped."""
    for index, row in _rows(ds.select_columns(_used_columns(columns))):
        record = _convert(index, row, task, layout, columns, required, system_prompt, tally)
        if record is not None:
            yield index, record


STREAM_SAMPLE = 2000  # records of a stream read for the page's preview and statistics, and for plan
STREAM_COLUMNS = {  # the converted records' types, named up front: a mapped stream does not know them
    "sft": {"messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}]},
    "text": {"text": datasets.Value("string")},
}


def _used_columns(columns: ColumnMap) -> list[str]:
    """The stored columns the mapping reads, each once."""
    return list(dict.fromkeys(c for c in columns.model_dump().values() if c))


def _prepare_stream(cfg: DatasetConfig, task: str, system_prompt: str | None, sample: int | None) -> Prepared:
    """dataset.streaming: with ``sample`` (the page, plan), its first records, converted and kept; without
    (training), the stream itself, each record converted as the trainer reads it and unusable ones skipped.
    A stream's length is unknown, so ``n_records`` counts the first records read (config.py asks for
    max_steps, no held-out share, no classification)."""
    ds, layout, columns, required = _source(cfg, task)
    tally = _Tally({role: 0 for role in required})
    head = datasets.Dataset.from_list(list(ds.take(sample or STREAM_SAMPLE)))  # read once, kept in memory
    kept = [record for _, record in _converted(head, task, layout, columns, required, system_prompt, tally)]
    warnings = tally.warnings(columns, required, task, len(head))
    common = {"layout": layout, "columns": columns, "label_names": None, "warnings": warnings}
    n, first = len(kept), datasets.Dataset.from_list(kept)  # kept holds one at least: tally.warnings says
    if sample is not None:
        return Prepared(first, None, n_records=n, n_train=n, sampled=True, streamed=True, **common)
    used = _used_columns(columns)
    seen, read = _Tally({role: 0 for role in required}), [0]  # read: rows so far, to name a bad one

    def convert(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        done = [_convert(read[0] + i, row, task, layout, columns, required, system_prompt, seen)
                for i, row in enumerate(rows)]  # fmt: skip
        read[0] += len(rows)
        name = next(iter(STREAM_COLUMNS[task]))
        return {name: [record[name] for record in done if record is not None]}

    train = ds.select_columns(used).map(
        convert, batched=True, remove_columns=used, features=datasets.Features(STREAM_COLUMNS[task])
    )
    return Prepared(train, None, n_records=n, n_train=n, streamed=True, head=first, **common)


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


def _rows(ds: datasets.Dataset, batch_size: int = 1000) -> Any:
    """(index, row) of every record, read a batch at a time (a Dataset is on disk; a list would not be)."""
    index = 0
    for batch in ds.iter(batch_size=batch_size):
        for values in zip(*batch.values(), strict=True):
            yield index, dict(zip(batch, values, strict=True))
            index += 1


@dataclass
class _Tally:
    """What the conversion saw: records left empty per required role, replies missing, labels, usable."""

    empty: dict[str, int]
    no_reply: int = 0
    usable: int = 0
    labels: set[Any] = field(default_factory=set)

    def warnings(self, columns: ColumnMap, required: tuple[str, ...], task: str, total: int) -> list[str]:
        """The warnings for what was dropped; an error when nothing is left to learn from."""
        out = []
        for role in required:
            name = getattr(columns, role)
            if self.empty[role] == total:
                raise DataError(
                    f"dataset.columns.{role}",
                    f"column {name!r} is empty in every record; set dataset.columns.{role} to a column with "
                    "content",
                )
            if self.empty[role]:
                out.append(f"dropped {self.empty[role]} records with an empty {name!r}")
        if task == "sft" and not self.usable and self.no_reply:
            raise DataError(
                "dataset.columns.messages", "no conversation has an assistant turn, so nothing can be learned"
            )
        if not self.usable:
            names = " and ".join(repr(getattr(columns, role)) for role in required)
            raise DataError(
                f"dataset.columns.{required[0]}",
                f"no record has {names} both filled in, so nothing can be learned; fill them or map other "
                "columns",
            )
        if self.no_reply:
            out.append(f"dropped {self.no_reply} conversations with no assistant turn")
        return out


def _convert(
    index: int,
    row: dict[str, Any],
    task: str,
    layout: str,
    columns: ColumnMap,
    required: tuple[str, ...],
    system_prompt: str | None,
    tally: _Tally,
) -> dict[str, Any] | None:
    """One stored row as the trainer reads it, or None when it has nothing to learn (tally says why)."""
    blank = [role for role in required if _is_blank(row[getattr(columns, role)])]
    for role in blank:
        tally.empty[role] += 1
    if blank:
        return None
    if task == "sft":
        messages = _conversation(index, row, layout, columns, system_prompt)
        if not any(m["role"] == "assistant" for m in messages):
            tally.no_reply += 1
            return None
        record: dict[str, Any] = {"messages": messages}
    elif task == "text":
        record = {"text": _text(row[columns.text], "text", index)}
    else:
        label = row[columns.label]
        if isinstance(label, (list, dict)):
            raise DataError("dataset.columns.label", "labels must be class names or integer ids, not lists")
        tally.labels.add(label)
        record = {"text": _text(row[columns.text], "text", index), "label": label}
    tally.usable += 1
    return record


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


def _conversation(
    index: int, row: dict[str, Any], layout: str, columns: ColumnMap, system_prompt: str | None
) -> list[dict[str, str]]:
    messages = _record_messages(index, row, layout, columns)
    system = _text(row.get(columns.system), "system", index).strip() if columns.system else ""
    if (system or system_prompt) and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system or system_prompt or ""})
    return messages


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
        content = message.get("content")
        content = message.get("value") if content is None else content  # ShareGPT's name for it
        out.append({"role": mapped, "content": _text(content, "messages", index)})
    return out


def _classes(
    kept: list[dict[str, Any]], seen: set[Any], feature: Any, warnings: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Integer labels and the class names, from every label ``seen``: string labels get sorted ids."""
    if isinstance(feature, datasets.ClassLabel):
        return kept, list(feature.names)
    if all(isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer()) for v in seen):
        ids = {int(v) for v in seen}
        if min(ids) < 0:
            raise DataError("dataset.columns.label", f"label {min(ids)} is negative; class ids start at 0")
        unused = sorted(set(range(max(ids) + 1)) - ids)
        if unused:  # ids are kept, so the model still gets max + 1 outputs
            warnings.append(
                f"label ids {unused[:10]} never occur; the model still gets {max(ids) + 1} classes"
            )
        return [{**r, "label": int(r["label"])} for r in kept], [str(k) for k in range(max(ids) + 1)]
    names = sorted({str(v).strip() for v in seen})
    index = {name: k for k, name in enumerate(names)}
    return [{**r, "label": index[str(r["label"]).strip()]} for r in kept], names


def _eval_size(n: int, fraction: float) -> int:
    if fraction <= 0:
        return 0
    n_eval = max(1, round(n * fraction))
    if n_eval >= n:
        raise DataError(
            "dataset.validation_split",
            f"holding out {fraction:g} of {n} records leaves none for training; lower it or set it to 0",
        )
    return n_eval


def _split(ds: datasets.Dataset, n_eval: int, seed: int) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    if not n_eval:
        return ds, None
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
    first = list(ds.take(n)) if cfg.streaming else ds.select(range(min(n, len(ds)))).to_list()
    return {
        "columns": ds.column_names,
        "rows": [_shorten(row) for row in first],
        "layout": layout,
        "mapping": mapping,
        "n_records": None if cfg.streaming else len(ds),  # a stream's length is unknown
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
            "mean_cut": 0.0,
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
        "mean_cut": float(np.minimum(arr, max_length).mean()),  # what a batch carries: cut at max_length
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": int(arr.max()),
        "over_max": int((arr > max_length).sum()),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
