"""The errors that mean "bad input, here is why": one family, each carrying the field at fault and the fix.

    (raised by the engine; ``python -m finetune`` prints them as one line each and exits 2, the page shows
    each one next to its field)

A :class:`Problem` is one thing to fix: the config path it is about ('' = the whole config or no field), the
message that says what to do, and, for a schema violation, pydantic's error type and context so the page can
word it in the reader's language. Every error below holds one or more problems; catching
:class:`TuneboardError` catches them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing to fix: ``path`` is a schema path ('' = no single field); ``kind``/``ctx`` from pydantic."""

    path: str
    message: str
    kind: str | None = None
    ctx: dict[str, Any] | None = None
    todo: bool = False  # a choice not made yet (map a column), shown as a step to take, not as a mistake


class TuneboardError(ValueError):
    """Bad input: ``items`` are the problems found at once (never empty); ``field``/``message`` the first."""

    separator = "; "

    def __init__(self, field: str = "", message: str = "", *, more: Iterable = (), todo: bool = False):
        first = Problem(field, message, todo=todo)
        self.items = [first, *(p if isinstance(p, Problem) else Problem(*p, todo=todo) for p in more)]
        lines = (f"{p.path}: {p.message}" if p.path else p.message for p in self.items)
        super().__init__(self.separator.join(lines))

    def __reduce__(self) -> tuple:
        """Pickled as it is (the analysis process sends its errors to the page): class, text and fields,
        whatever the subclass's own __init__ takes."""
        return _restore, (type(self), self.args, self.__dict__)

    @property
    def field(self) -> str:
        return self.items[0].path

    @property
    def message(self) -> str:
        return self.items[0].message

    @property
    def todo(self) -> bool:
        return all(p.todo for p in self.items)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(path, message) pairs, in the order found."""
        return [(p.path, p.message) for p in self.items]


class ConfigError(TuneboardError):
    """A config that breaks the schema (typed fields, unknown keys, refused combinations)."""

    separator = "\n"

    def __init__(self, problems: Iterable[tuple[str, str] | Problem]):
        items = [p if isinstance(p, Problem) else Problem(*p) for p in problems]
        super().__init__(items[0].path, items[0].message, more=items[1:])
        self.items[0] = items[0]


class FieldProblem(ValueError):
    """Raised inside a schema validator to name the exact field at fault (pydantic would name the section)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class PresetError(TuneboardError):
    """A preset that does not exist or does not parse."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(field, message)


class DataError(TuneboardError):
    """A dataset that cannot be read or mapped as configured."""


class ModelError(TuneboardError):
    """A model or tokenizer that cannot be loaded as configured."""


class TokenError(TuneboardError):
    """A token list that cannot be applied to the tokenizer."""


class TemplateError(TuneboardError):
    """A template that cannot be loaded or rendered; ``index``: the conversation it failed on (None: the
    template itself, or the whole call)."""

    def __init__(self, message: str, index: int | None = None, *, field: str = "template.name"):
        self.index = index
        super().__init__(field, message)


class PreflightError(TuneboardError):
    """A check before the run that fails on the combination (max_length too short for the template, ...)."""


class JobError(TuneboardError):
    """A job that cannot be created, started or signalled (a full or read-only data directory, ...)."""

    def __init__(self, message: str):
        super().__init__("", message)


def _restore(cls: type, args: tuple, state: dict[str, Any]) -> TuneboardError:
    error = cls.__new__(cls)
    ValueError.__init__(error, *args)
    error.__dict__.update(state)
    return error
