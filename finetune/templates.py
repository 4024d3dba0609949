"""Chat templates: resolve a preset / the model's own / a custom one, render it, find the loss mask, warn.

    python -c "from finetune import templates as t; print(t.load('gemma2').source)"
    .venv/bin/pytest tests/test_templates.py -q

Presets live in ``presets/templates/<id>.jinja`` (+ ``<id>.yaml`` metadata, see its README). They render
byte-identical to each family's official template and wrap the tokens that carry loss in
``{% generation %}`` so ``apply_chat_template(..., return_assistant_tokens_mask=True)`` can find them.
Rendering uses transformers' own sandboxed Jinja environment, so a preview here is what training sees.
Custom templates are user input: their size, render time and output size are capped.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import jinja2
from transformers.utils.chat_template_utils import _compile_jinja_template

from finetune import presets

SPECIALS = ("model", "custom")
MAX_SOURCE_BYTES = 64 * 1024  # the longest official templates are ~10 KiB
MAX_RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 1_000_000  # far above any training example; stops runaway loops early
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
    "prepend_last_user": "prepended to the last user message only; earlier turns are rendered without it",
    "preamble": "used in place of the preamble line at the top of the prompt",
}


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered; the message names the template and a fix."""


@dataclass(frozen=True)
class Template:
    """A resolved chat template: ``id`` is a preset id, ``"model"`` or ``"custom"``."""

    id: str
    source: str
    meta: dict


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
    _compile(template)
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
    """Render ``messages`` to text, with a time limit and an output cap (custom templates are user input)."""
    compiled = _compile(template)
    context = {
        **extra,
        "messages": _plain_messages(messages),
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    return _guarded(template.id, lambda: compiled.generate(**context))


def assistant_mask(
    tokenizer: Any, template: Template, messages: list[dict], *, max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of one conversation and a 0/1 mask of the tokens that carry loss (the replies)."""
    if not has_generation_markers(template.source):
        raise TemplateError(
            f"template {template.id!r} has no {{% generation %}} markers, so the reply tokens cannot be told"
            " apart; train on all tokens (train_on: all) or pick a preset template, which all have markers"
        )
    # Dry run under the guard first: apply_chat_template itself has no time or size limit.
    specials = {key: value for key, value in tokenizer.special_tokens_map.items() if isinstance(value, str)}
    render(template, messages, **specials)
    try:
        out = tokenizer.apply_chat_template(
            messages,
            chat_template=template.source,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            truncation=max_length is not None,
            max_length=max_length,
        )
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {template.id!r}: {exc}") from exc
    return list(out["input_ids"]), list(out["assistant_masks"])


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
    for name in presets.names("templates"):
        if all(_renders_same(own, load(name), tokenizer, prompt) for prompt in (True, False)):
            return name
    return None


def _renders_same(a: Template, b: Template, tokenizer: Any, add_generation_prompt: bool) -> bool:
    messages = _PROBE if add_generation_prompt else _PROBE[:2]
    tokens = {"bos_token": tokenizer.bos_token or "", "eos_token": tokenizer.eos_token or ""}
    try:
        return render(a, messages, add_generation_prompt=add_generation_prompt, **tokens) == render(
            b, messages, add_generation_prompt=add_generation_prompt, **tokens
        )
    except TemplateError:
        return False


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


def _compile(template: Template) -> jinja2.Template:
    try:
        return _compile_jinja_template(template.source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template {template.id!r} has a Jinja syntax error on line {exc.lineno}: {exc.message}"
        ) from exc


def _plain_messages(messages: list[dict]) -> list[dict]:
    """Copies without None values, as apply_chat_template passes them (templates test keys with `in`)."""
    return [{key: value for key, value in message.items() if value is not None} for message in messages]


class _Abort(Exception):
    """Raised inside the render thread to stop a template that ran too long."""


def _guarded(name: str, generate: Any) -> str:
    """Run a Jinja generator in a worker thread; stop it at MAX_RENDER_SECONDS or MAX_OUTPUT_CHARS.

    A thread that is merely abandoned would keep spinning, so the worker traces the template's own
    frames (file "<template>") and raises inside them once the deadline passes; that also stops loops
    that write nothing. No signals, so it works off the main thread (Gradio handlers, jobs).
    """
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    result: dict[str, Any] = {}

    def stop_when_late(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _Abort
        return stop_when_late

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return stop_when_late if frame.f_code.co_filename == "<template>" else None

    def work() -> None:
        sys.settrace(tracer)
        try:
            parts, size = [], 0
            for part in generate():
                parts.append(part)
                size += len(part)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateError(
                        f"template {name!r} rendered more than {MAX_OUTPUT_CHARS} characters; check its loops"
                    )
            result["text"] = "".join(parts)
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc
        finally:
            sys.settrace(None)

    worker = threading.Thread(target=work, name=f"render-{name}", daemon=True)
    worker.start()
    worker.join(MAX_RENDER_SECONDS + 1.0)  # the tracer stops it; the extra second covers a slow C call
    error = result.get("error")
    if worker.is_alive() or isinstance(error, _Abort):
        raise TemplateError(
            f"template {name!r} took longer than {MAX_RENDER_SECONDS:g} s to render; check its loops"
        )
    if isinstance(error, TemplateError):
        raise error
    if isinstance(error, jinja2.TemplateError):  # raise_exception(...) and sandbox refusals land here
        raise TemplateError(f"template {name!r}: {error.message or error}") from error
    if error is not None:
        raise TemplateError(f"template {name!r} failed to render: {type(error).__name__}: {error}") from error
    return result["text"]
