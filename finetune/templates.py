"""Chat templates: resolve a preset / the model's own / a custom one, render it, find the loss mask, warn.

    python -c "from finetune import templates as t; print(t.load('gemma2').source)"
    .venv/bin/pytest tests/test_templates.py -q

Presets live in ``presets/templates/<id>.jinja`` (+ ``<id>.yaml`` metadata, see its README). They render
byte-identical to each family's official template and wrap the tokens that carry loss in
``{% generation %}`` so ``apply_chat_template(..., return_assistant_tokens_mask=True)`` can find them.
Every template, preset or not, is compiled and rendered by :func:`render_many` alone, in a child process with
hard time and memory limits (finetune/sandbox.py): a custom template is user input and a model's own one
comes from any Hub repository, so neither runs in the dashboard's process. :func:`encode` tokenizes what the
child rendered exactly as ``tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)`` does, and
the preview, ``plan`` and training all use it, so a preview is what training sees.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from finetune import presets, sandbox
from finetune.errors import TemplateError

SPECIALS = ("model", "custom")
MAX_SOURCE_BYTES = 64 * 1024  # the longest official templates are ~10 KiB
# A call's child is killed after MAX_RENDER_SECONDS plus PER_RECORD_SECONDS per conversation; a preset renders
# a conversation in well under a millisecond.
MAX_RENDER_SECONDS = 2.0
PER_RECORD_SECONDS = 0.005
MAX_OUTPUT_CHARS = 1_000_000  # per conversation, beyond its own text: stops runaway loops early
BATCH = 1000  # conversations per child by default (the trainer's map batches): bounds what one child holds
BATCH_CHARS = 8_000_000  # ... as does this cap on the characters of content sent to one child
# Same test transformers uses before it warns that a template has no markers.
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
# A conversation every template can render: no system message, since some official templates raise on one.
_PROBE = [
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi. How can I help?"},
    {"role": "user", "content": "Tell me a joke."},
]
_SYSTEM_BEHAVIOUR = {
    "merge_into_first_user": "merged into the first user turn (system text, a blank line, the user text)",
    "prepend_last_user": "prepended to the last user message only (system text, a blank line, the user "
    "text); earlier turns are rendered without it",
    "preamble": "used in place of the preamble line at the top of the prompt",
}


@dataclass(frozen=True)
class Template:
    """A resolved chat template: ``id`` is a preset id, ``"model"`` or ``"custom"``."""

    id: str
    source: str
    meta: dict


@dataclass(frozen=True)
class Rendered:
    """One conversation as text, and the character spans written inside ``{% generation %}``."""

    text: str
    spans: list[tuple[int, int]]


@dataclass(frozen=True)
class Encoded:
    """One conversation as token ids, and a 0/1 mask of the ids that carry loss."""

    ids: list[int]
    mask: list[int]


def list_templates() -> list[str]:
    """Preset ids, then the two specials: the model's own template and a custom one."""
    return [*presets.names("templates"), *SPECIALS]


def load(name: str, *, tokenizer: Any = None, custom_source: str | None = None) -> Template:
    """Resolve ``name`` to a template; the source is compiled so syntax errors surface here."""
    if name == "model":
        template = Template("model", _model_source(tokenizer), _special_meta("model"))
    elif name == "custom":
        template = Template("custom", _custom_source(custom_source), _special_meta("custom"))
    elif name in presets.names("templates"):
        source = presets.read_text("templates", f"{name}.jinja")
        template = Template(name, source, presets.load("templates", name))
    else:
        raise TemplateError(f"unknown template {name!r}; choose one of: {', '.join(list_templates())}")
    _compiles(template)
    return template


def has_generation_markers(source: str) -> bool:
    """Whether the template marks the tokens that carry loss with ``{% generation %}``."""
    return bool(_GENERATION_TAG.search(source))


def render(
    template: Template,
    messages: list[dict],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = False,
    **extra: Any,
) -> str:
    """Render ``messages`` to text (one conversation through :func:`render_many`)."""
    context = {**extra, "bos_token": bos_token, "eos_token": eos_token}
    return render_many(template, [messages], context, add_generation_prompt=add_generation_prompt)[0].text


def render_many(
    template: Template,
    conversations: Sequence[list[dict]],
    context: dict[str, Any] | None = None,
    *,
    add_generation_prompt: bool = False,
    spans: bool = False,
    batch: int = BATCH,
) -> list[Rendered]:
    """The one way a template runs: in sandbox children, ``batch`` conversations each (fewer where they hold
    over BATCH_CHARS characters); raises TemplateError.

    ``context`` holds the special tokens (bos_token, eos_token, ...) and any other template variable. A bigger
    ``batch`` starts fewer children (~20 ms each), as statistics over every record of a big file want.
    """
    out: list[Rendered] = []
    for result in _rendered(template, conversations, context, add_generation_prompt, spans, batch):
        out += [Rendered(text, list(marks)) for text, marks in zip(result.texts, result.spans, strict=True)]
    return out


def _rendered(
    template: Template,
    conversations: Sequence[list[dict]],
    context: dict[str, Any] | None,
    prompt: bool,
    spans: bool,
    batch: int,
) -> Iterator[sandbox.Result]:
    """Each child's answer in turn (render_many's work); raises at the first conversation that fails."""
    for start, chunk, chars in _chunks(conversations, batch):
        job = _job(template, chunk, context or {}, prompt, spans, chars)
        (result,) = _run([job], template.id, len(chunk))
        if result.error is not None:
            index, kind, detail = result.error
            raise _error(template.id, kind, detail, None if index < 0 else start + index)
        yield result


def _chunks(conversations: Sequence[list[dict]], batch: int) -> Iterator[tuple[int, list[list[dict]], int]]:
    """(index of the first, conversations, their characters of content) in pieces of at most ``batch``
    conversations and BATCH_CHARS characters (a longer conversation goes alone), as the template sees them."""
    start, chunk, chars = 0, [], 0
    for index, messages in enumerate(conversations):
        size = sum(len(str(m.get("content") or "")) for m in messages)
        if chunk and (len(chunk) >= batch or chars + size > BATCH_CHARS):
            yield start, chunk, chars
            start, chunk, chars = index, [], 0
        chunk.append(_plain_messages(messages))
        chars += size
    if chunk:
        yield start, chunk, chars


def encode(
    tokenizer: Any,
    template: Template,
    conversations: Sequence[list[dict]],
    *,
    max_length: int | None = None,
    assistant_only: bool = True,
    add_generation_prompt: bool = False,
) -> list[Encoded]:
    """Token ids and loss masks, as ``apply_chat_template(..., return_assistant_tokens_mask=True)`` has them.

    ``assistant_only``: only the ``{% generation %}`` text carries loss (the template must mark it); else all.
    """
    if assistant_only and not has_generation_markers(template.source):
        raise TemplateError(
            f"template {template.id!r} has no {{% generation %}} markers, so the reply tokens cannot be told"
            " apart; train on all tokens (train_on: all) or pick a preset template, which all have markers"
        )
    if not conversations:
        return []
    rendered = render_many(
        template,
        conversations,
        special_tokens(tokenizer),
        add_generation_prompt=add_generation_prompt,
        spans=assistant_only,
    )
    out = tokenizer(
        [r.text for r in rendered],
        add_special_tokens=False,  # the template writes them
        truncation=max_length is not None,
        max_length=max_length,
    )
    encoded = []
    for i, r in enumerate(rendered):
        ids = list(out["input_ids"][i])
        mask = _span_mask(out.encodings[i].offsets, r.spans) if assistant_only else [1] * len(ids)
        encoded.append(Encoded(ids, mask))
    return encoded


def lengths(
    tokenizer: Any, template: Template, conversations: Sequence[list[dict]], *, batch: int = BATCH
) -> list[int]:
    """How many tokens :func:`encode` gives each conversation (what the trainer reads before it truncates to
    max_length), without the masks: rendered as encode renders them, counted by :func:`token_counts`."""
    answers = _rendered(template, conversations, special_tokens(tokenizer), False, False, batch)
    texts = [text for answer in answers for text in answer.texts]
    return token_counts(tokenizer, texts) if texts else []


def token_counts(tokenizer: Any, texts: list[str], *, add_special_tokens: bool = False) -> list[int]:
    """``len(tokenizer(texts, add_special_tokens=...)["input_ids"][i])`` of each text, from the one call to
    the Rust tokenizer that transformers 5.24 makes (TokenizersBackend._encode_plus), made directly as
    ``encode_batch_fast``: no character offsets, no Python lists of ids, about half the time. Only for a
    tokenizer set neither to truncate nor to pad, splitting special tokens as its wrapper says; any other is
    called as it is."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    direct = (
        backend is not None
        and backend.truncation is None
        and backend.padding is None
        and backend.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False))
    )
    if not direct:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast: tokenizers 0.20
    return [len(e) for e in encode(texts, add_special_tokens=add_special_tokens)]


def assistant_mask(
    tokenizer: Any, template: Template, messages: list[dict], *, max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of one conversation and a 0/1 mask of the tokens that carry loss (the replies)."""
    (one,) = encode(tokenizer, template, [messages], max_length=max_length)
    return one.ids, one.mask


def special_tokens(tokenizer: Any) -> dict[str, Any]:
    """The template variables apply_chat_template adds: the tokenizer's special tokens by name."""
    return {
        key: value
        for key, value in tokenizer.special_tokens_map.items()
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    }


def _span_mask(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for every token overlapping a span (transformers 5.24 apply_chat_template's rule, so a span cut by
    truncation keeps its remaining tokens); spans and offsets are both in order, so one pass suffices."""
    mask = [0] * len(offsets)
    k = 0
    for token, (start, end) in enumerate(offsets):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            mask[token] = 1
    return mask


def check(
    template: Template,
    tokenizer: Any = None,
    messages: list[dict] | None = None,
    *,
    model_family_template: str | None = None,
) -> list[str]:
    """Human-readable warnings about a template choice; an empty list means nothing to say."""
    warnings = []
    if tokenizer is not None:
        warnings += _missing_token_warnings(template, tokenizer)
    behaviour = _SYSTEM_BEHAVIOUR.get(template.meta.get("system", ""))
    if behaviour and any(message.get("role") == "system" for message in messages or []):
        warnings.append(
            f"template {template.id!r} has no system role: the system message will be {behaviour}"
        )
    if model_family_template and template.id not in (model_family_template, "model"):
        warnings.append(
            f"this model was instruction-tuned with {model_family_template!r}; further tuning should keep"
            f" {model_family_template!r} (picked: {template.id!r})"
        )
    return warnings


def detect(tokenizer: Any) -> str | None:
    """The preset whose output matches the tokenizer's own chat template on a probe conversation, if any."""
    try:
        own = load("model", tokenizer=tokenizer)
    except TemplateError:
        return None
    names = presets.names("templates")
    tokens = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or ""}
    jobs = [
        _job(candidate, [_PROBE if prompt else _PROBE[:2]], tokens, prompt, False)
        for candidate in (own, *(load(name) for name in names))
        for prompt in (True, False)
    ]
    texts = [r.texts[0] if r.error is None else None for r in _run(jobs, "model", len(jobs))]
    if None in texts[:2]:
        return None
    return next((name for k, name in enumerate(names, 1) if texts[2 * k : 2 * k + 2] == texts[:2]), None)


def end_of_turn(template: Template, tokenizer: Any = None) -> str | None:
    """The text a reply ends with, which the model must learn to write to stop: the template's own
    ``eos_token`` (presets/templates/*.yaml), else the tokenizer's (a template that writes ``eos_token``)."""
    return template.meta.get("eos_token") or (getattr(tokenizer, "eos_token", None) if tokenizer else None)


def stop_strings(template: Template, tokenizer: Any = None) -> list[str]:
    """Every text that ends a generation: the end of turn, the template's stop tokens, the tokenizer's eos."""
    found = [end_of_turn(template, tokenizer), *(template.meta.get("stop_tokens") or [])]
    found.append(getattr(tokenizer, "eos_token", None) if tokenizer else None)
    return list(dict.fromkeys(s for s in found if s))


def eot_carries_loss(template: Template, tokenizer: Any = None) -> bool | None:
    """Whether, under ``train_on: assistant``, the end of turn written after each reply lies inside the
    ``{% generation %}`` span, so it carries loss and the tuned model learns to stop. None: the template has
    no markers, or writes no known end of turn. Checked on a probe conversation (``tokenizer``: whose
    special tokens the template writes; without one, the template's own)."""
    if not has_generation_markers(template.source):
        return None
    context = {
        "bos_token": template.meta.get("bos_token") or "<s>",
        "eos_token": end_of_turn(template) or "</s>",
    }
    context |= special_tokens(tokenizer) if tokenizer is not None else {}
    candidates = [c for c in (template.meta.get("eos_token"), context["eos_token"]) if c]
    probe = [*_PROBE, {"role": "assistant", "content": "Why did the chicken cross the road?"}]
    (rendered,) = render_many(template, [probe], context, spans=True)
    text, position = rendered.text, 0
    for message in (m for m in probe if m["role"] == "assistant"):
        end = text.index(message["content"], position) + len(message["content"])
        found = [(text.find(c, end), c) for c in candidates if text.find(c, end) >= 0]
        if not found:
            return None
        at, eot = min(found)
        if not any(a <= at and at + len(eot) <= b for a, b in rendered.spans):
            return False
        position = at + len(eot)
    return True


def _missing_token_warnings(template: Template, tokenizer: Any) -> list[str]:
    """Special tokens the template writes that the tokenizer would split into pieces."""
    warnings = []
    for token in template.meta.get("special_tokens") or []:
        pieces = tokenizer.encode(token, add_special_tokens=False)
        if len(pieces) != 1 or token not in tokenizer.get_vocab():
            warnings.append(
                f"template {template.id!r} writes {token!r}, which is not a token of this tokenizer (it would"
                f" be split into {len(pieces)} pieces); add it under tokens.add with special: true"
            )
    if "eos_token" in template.source and tokenizer.eos_token is None:
        warnings.append(
            f"template {template.id!r} ends replies with eos_token, but this tokenizer has none; add one"
            " under tokens.add with special: true and make it the eos_token"
        )
    return warnings


def _model_source(tokenizer: Any) -> str:
    source = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(source, dict):  # tokenizers that ship several named templates
        source = source.get("default")
    if not source:
        raise TemplateError(
            "template 'model': this model's tokenizer has no chat template of its own; pick a preset"
            f" ({', '.join(presets.names('templates'))}) or 'custom'"
        )
    return source


def _custom_source(source: str | None) -> str:
    if not source or not source.strip():
        raise TemplateError("template 'custom' is empty; paste a Jinja chat template or pick a preset")
    size = len(source.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise TemplateError(
            f"template 'custom' is {size} bytes; the limit is {MAX_SOURCE_BYTES} (official templates are far"
            " smaller), so shorten it"
        )
    return source


def _special_meta(name: str) -> dict:
    """Metadata for templates we know nothing about: no system-role claims, no special-token list."""
    label = {"model": "The model's own template", "custom": "Custom template"}[name]
    return {"id": name, "name": label, "system": None, "special_tokens": []}


def _compiles(template: Template) -> None:
    """Compile the template in a sandbox child, so syntax errors surface when it is picked."""
    error = _compile_error(template.source)
    if error is not None:
        raise _error(template.id, *error)


@functools.lru_cache(maxsize=64)
def _compile_error(source: str) -> tuple[str, str] | None:
    (result,) = _run([sandbox.Job(source, [])], "template", 0)
    return None if result.error is None else result.error[1:]


def _job(
    template: Template,
    conversations: list[list[dict]],
    context: dict,
    prompt: bool,
    spans: bool,
    size: int | None = None,  # the conversations' characters of content, where the caller counted them
) -> sandbox.Job:
    if size is None:
        size = sum(len(str(m.get("content") or "")) for messages in conversations for m in messages)
    context = {"tools": None, "documents": None, **context, "add_generation_prompt": prompt}
    return sandbox.Job(template.source, conversations, context, spans, MAX_OUTPUT_CHARS + 2 * size)


def _run(jobs: list[sandbox.Job], name: str, conversations: int) -> list[sandbox.Result]:
    limit = MAX_RENDER_SECONDS + PER_RECORD_SECONDS * conversations
    try:
        return sandbox.run(jobs, limit)
    except sandbox.Failed as exc:
        why = {
            "timeout": f"took longer than {limit:.1f} s to render; check its loops",
            "memory": f"needed more than {sandbox.MEMORY_BYTES // 2**20} MB to render; check its loops",
        }.get(exc.reason, f"stopped the renderer ({exc}); check it")
        raise TemplateError(f"template {name!r} {why}") from None


def _error(name: str, kind: str, detail: str, index: int | None = None) -> TemplateError:
    message = {
        "syntax": f"template {name!r} has a Jinja syntax error on {detail}",
        "refused": f"template {name!r} was refused: {detail}",
        "raised": f"template {name!r}: {detail}",
    }.get(kind, f"template {name!r} failed to render: {detail}")
    return TemplateError(message, index)


def _plain_messages(messages: list[dict]) -> list[dict]:
    """Without None values, as apply_chat_template passes them (templates test keys with `in`); a message
    with none goes as it is: the child gets a copy, and the sandbox lets no template change it."""
    return [
        message if None not in message.values() else {k: v for k, v in message.items() if v is not None}
        for message in messages
    ]
