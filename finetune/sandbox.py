"""Chat templates are code from strangers: compile and render them in a child process with hard limits.

    .venv/bin/pytest tests/test_sandbox.py -q

A custom template (pasted in the page) or a model's own one (from any Hub repository) is Jinja that the
server runs to show a preview. Jinja's sandbox stops escapes, not cost: nested loops, one huge ``**`` (one
C call that holds the GIL for minutes), or a constant Jinja folds while compiling can stall the whole server.
So every compile and render happens in a child process forked from a small fork server (multiprocessing's
"forkserver", which has imported only jinja2), with
- a wall-clock deadline, after which the child is killed (SIGKILL: a C-level big-integer operation ignores
  anything softer);
- an address-space limit (RLIMIT_AS), so a template cannot take the machine's memory;
- an environment that refuses ``**``, ``*`` and ``%`` results beyond a size; intercepted operators are also
  never folded at compile time (jinja2.nodes.BinExpr.as_const);
- an output cap per conversation.
The environment mirrors transformers' chat-template environment (transformers 5.24,
utils/chat_template_utils.py: trim/lstrip blocks, loopcontrols, ``{% generation %}`` spans, tojson,
raise_exception, strftime_now, dict, namespace); tests/test_sandbox.py checks that both render the same.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_INT_BITS = 64_000  # ~19,000 digits: far beyond any template's arithmetic, far below a slow operation
MAX_ITEMS = 1_000_000  # characters or items one `*` may build
MAX_FORMAT_WIDTH = 10_000  # widths and precisions in "%" formatting
MEMORY_BYTES = 512 * 2**20  # address space a child may add to what the fork server already maps
_FORMAT_NUMBER = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


class Refused(jinja2.exceptions.SecurityError):
    """An operation the bounded environment will not run; the message says which and why."""


@dataclass(frozen=True)
class Job:
    """One template applied to conversations; ``context``: bos_token, eos_token, add_generation_prompt..."""

    source: str
    conversations: list[list[dict[str, Any]]]
    context: dict[str, Any] = field(default_factory=dict)
    spans: bool = False  # also return the character spans written inside {% generation %}
    max_chars: int = 1_000_000  # per conversation: stops runaway loops early


@dataclass
class Result:
    """What a job rendered, in order; ``error`` is (index, kind, detail) where it stopped.

    Index -1 is the template itself (a syntax error, a constant that cannot be folded). Kinds: "syntax",
    "refused" (a limit here or the sandbox's), "raised" (the template's raise_exception), "failed".
    """

    texts: list[str] = field(default_factory=list)
    spans: list[list[tuple[int, int]]] = field(default_factory=list)
    error: tuple[int, str, str] | None = None


class Failed(RuntimeError):
    """The child did not answer: ``reason`` is "timeout", "memory" or "crashed"."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


# ---------------------------------------------------------------- the bounded environment


def _check_binop(operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * left.bit_length() > MAX_INT_BITS:
            raise Refused(f"{left} ** {right} is too large a number (over {MAX_INT_BITS} bits)")
    elif operator == "*" and ints:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise Refused(f"a product over {MAX_INT_BITS} bits")
    elif operator == "*" and isinstance(left, int) != isinstance(right, int):
        count, seq = (left, right) if isinstance(left, int) else (right, left)
        if hasattr(seq, "__len__") and count > 0 and len(seq) * count > MAX_ITEMS:
            raise Refused(f"repeating {len(seq)} items {count} times (over {MAX_ITEMS})")
    elif operator == "%" and isinstance(left, str):
        for width, precision in _FORMAT_NUMBER.findall(left):
            for number in (width, precision):
                if number == "*" or (number and int(number) > MAX_FORMAT_WIDTH):
                    raise Refused(f"a '%' format width over {MAX_FORMAT_WIDTH}")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus size limits on the operators that can build huge values."""

    intercepted_binops = frozenset(["**", "*", "%"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


class _Generation(Extension):
    """``{% generation %}...{% endgeneration %}``: records where the text that carries loss was written."""

    tags = {"generation"}

    def __init__(self, environment: jinja2.Environment):
        super().__init__(environment)
        self.tracking: tuple[list[int], list[tuple[int, int]]] | None = None  # ([chars so far], spans)

    def parse(self, parser: Any) -> nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

    def _mark(self, caller: Any) -> str:
        text = caller()
        if self.tracking is not None:
            written, spans = self.tracking
            spans.append((written[0], written[0] + len(text)))
        return text


class _Namespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore names (as transformers does: no CPython internals)."""

    def __init__(*args: Any, **kwargs: Any):  # Jinja's signature trick: namespace(self=...) still works
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise Refused(f"a namespace attribute may not start with '_' ({name!r})")


class _Dict:
    """``dict(...)`` and ``dict.fromkeys(...)`` without the type object itself."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys=False):
    # transformers' version: no HTML escaping, options for indent and separators
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment() -> BoundedEnvironment:
    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = _Dict()
    env.globals["namespace"] = _Namespace
    return env


# ---------------------------------------------------------------- inside the child


def _render_job(env: BoundedEnvironment, job: Job) -> Result:
    result = Result()
    try:
        template = env.from_string(job.source)
    except jinja2.TemplateSyntaxError as exc:
        result.error = (-1, "syntax", f"line {exc.lineno}: {exc.message}")
        return result
    except Exception as exc:  # noqa: BLE001 - folding a constant can fail in many ways: all are the template's
        result.error = (-1, *_describe(exc))
        return result
    tracker: _Generation = env.extensions[_Generation.identifier]  # type: ignore[assignment]
    for index, messages in enumerate(job.conversations):
        written: list[int] = [0]
        spans: list[tuple[int, int]] = []
        tracker.tracking = (written, spans) if job.spans else None
        try:
            text = _generate(template, {**job.context, "messages": messages}, written, job.max_chars)
        except Exception as exc:  # noqa: BLE001 - reported with the conversation's index, never raised
            result.error = (index, *_describe(exc))
            return result
        result.texts.append(text)
        result.spans.append(spans)
    return result


def _generate(template: jinja2.Template, context: dict[str, Any], written: list[int], limit: int) -> str:
    parts = []
    for part in template.generate(**context):
        parts.append(part)
        written[0] += len(part)
        if written[0] > limit:
            raise Refused(f"it wrote more than {limit} characters for one conversation; check its loops")
    return "".join(parts)


def _describe(exc: BaseException) -> tuple[str, str]:
    """(kind, detail) of a render failure; a MemoryError is the whole child's answer instead."""
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, Refused):
        return "refused", str(exc)
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return "refused", f"the sandbox forbids it ({exc})"
    if isinstance(exc, jinja2.TemplateError):  # raise_exception(...) lands here
        return "raised", str(exc.message or exc)
    return "failed", f"{type(exc).__name__}: {exc}"


def _child(conn: Any, jobs: list[Job], memory: int) -> None:
    os.environ.clear()  # HF_TOKEN, TUNEBOARD_AUTH...: nothing a template could reach, even past the sandbox
    _limit_memory(memory)
    env = environment()
    try:
        answer: Any = [_render_job(env, job) for job in jobs]
    except MemoryError:
        answer = "memory"
    conn.send(answer)
    conn.close()


def _limit_memory(extra: int) -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
    except (ImportError, OSError, ValueError):  # not Linux: the deadline still holds
        pass


# ---------------------------------------------------------------- the parent's side

_START = threading.Lock()
_CONTEXT: list[Any] = []


def _context() -> Any:
    with _START:
        if not _CONTEXT:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["finetune.sandbox"])  # children start with jinja2 imported
            _CONTEXT.append(ctx)
        return _CONTEXT[0]


def run(jobs: list[Job], timeout: float) -> list[Result]:
    """Render ``jobs`` in a fresh child; raises Failed when it overruns ``timeout`` seconds or its memory."""
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child, args=(writer, jobs, MEMORY_BYTES), daemon=True, name="tuneboard-render"
    )
    with _START:  # one connection to the fork server at a time
        child.start()
    writer.close()
    try:
        if not reader.poll(timeout):
            raise Failed("timeout", f"{timeout:g} s")
        answer = reader.recv()
    except (EOFError, OSError):
        child.join(1.0)
        raise Failed("crashed", f"exit code {child.exitcode}") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        reader.close()
    if answer == "memory":
        raise Failed("memory", f"{MEMORY_BYTES // 2**20} MB")
    return answer
