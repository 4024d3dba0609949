"""Tests for finetune/sandbox.py: templates render as transformers renders them, and hostile ones are stopped.

    .venv/bin/pytest tests/test_sandbox.py -q

The environment is a copy of transformers' chat-template environment with limits added, so the first tests
hold the copy to the original: same text, same {% generation %} spans, same ids and loss mask as
``apply_chat_template(..., return_assistant_tokens_mask=True)``. The rest are the templates a probe of the
page used to stall the server, each stopped in its child process while this process stays free.
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from test_templates import CONVERSATIONS, FOLLOW_UP, MASK_TOKENS, SYSTEM, official, tiny_tokenizer
from transformers.utils.chat_template_utils import render_jinja_template

from finetune import presets, sandbox, templates
from finetune.templates import TemplateError

OFFICIAL = ("gemma2", "llama3.1", "chatml", "mistral", "phi3")
NO_SYSTEM = ("gemma2",)  # its official template raises on a system message
SINGLE = CONVERSATIONS["single"]


def sources() -> dict[str, str]:
    """Every preset and every official template the presets copy."""
    out = {name: templates.load(name).source for name in presets.names("templates")}
    return out | {f"official-{name}": official(name).source for name in OFFICIAL}


def conversations(name: str) -> list[list[dict]]:
    system = [] if any(n in name for n in NO_SYSTEM) and name.startswith("official") else [SYSTEM]
    return [system + conv for conv in CONVERSATIONS.values()] + [[*SINGLE, FOLLOW_UP]]


@pytest.mark.parametrize("prompt", [False, True])
@pytest.mark.parametrize("name", list(sources()))
def test_renders_exactly_as_transformers(name: str, prompt: bool):
    source = sources()[name]
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    convs = conversations(name)
    ours = sandbox.run(
        [sandbox.Job(source, convs, {**tokens, "add_generation_prompt": prompt}, spans=True)], timeout=10
    )[0]
    theirs, spans = render_jinja_template(
        convs, chat_template=source, return_assistant_tokens_mask=True, add_generation_prompt=prompt, **tokens
    )
    assert ours.error is None
    assert ours.texts == theirs
    assert ours.spans == spans


@pytest.mark.parametrize("name", sorted(MASK_TOKENS))
def test_encode_gives_apply_chat_templates_ids_and_mask(name: str):
    template = templates.load(name)
    bos, eos = MASK_TOKENS[name]
    tokenizer = tiny_tokenizer(bos or None, eos, template.meta["special_tokens"], template.source)
    convs = [[SYSTEM, *conv] for conv in CONVERSATIONS.values()]
    for max_length in (None, 25):
        ours = templates.encode(tokenizer, template, convs, max_length=max_length)
        for conv, got in zip(convs, ours, strict=True):
            want = tokenizer.apply_chat_template(
                conv,
                return_dict=True,
                return_assistant_tokens_mask=True,
                truncation=max_length is not None,
                max_length=max_length,
            )
            assert got.ids == list(want["input_ids"])
            assert got.mask == list(want["assistant_masks"])
            assert max_length or 1 in got.mask


def test_many_conversations_go_in_batches_and_keep_their_order(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(templates, "BATCH", 7)
    convs = [
        [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}] for i in range(30)
    ]
    texts = [r.text for r in templates.render_many(templates.load("chatml"), convs)]
    assert len(texts) == 30 and all(f"q{i}" in text and f"a{i}" in text for i, text in enumerate(texts))
    failing = templates.load(
        "custom", custom_source="{{ raise_exception('no') if 'q23' in messages[0].content }}"
    )
    with pytest.raises(TemplateError) as caught:
        templates.render_many(failing, convs)
    assert caught.value.index == 23 and caught.value.message == "template 'custom': no"


# ---- hostile templates ------------------------------------------------------------------------------------

# What each refused template must say; a refusal comes at once, from the bounded operators.
REFUSED = {
    "{% set a = 9 %}{{ (a ** (9 ** 8)) % 10 }}": "9 \\*\\* 43046721 is too large a number",
    "{{ (9 ** (9 ** 7)) % 10 }}": "too large a number",  # folded at compile time by plain Jinja
    "{{ 'x' * 10 ** 8 }}": "repeating 1 items 100000000 times",
    "{{ [1] * 99999999 }}": "repeating 1 items 99999999 times",
    "{% set a = 2 ** 31000 %}{{ a * a * a }}": "a product over 64000 bits",
    "{{ '%0999999d' % 1 }}": "'%' format width over 10000",
    "{{ cycler.__init__.__globals__ }}": "the sandbox forbids it",
    "{% set ns = namespace() %}{% set ns._x = 1 %}": "may not start with '_'",
}


@pytest.mark.parametrize("source", list(REFUSED))
def test_operators_that_build_huge_values_are_refused_at_once(source: str):
    started = time.monotonic()
    with pytest.raises(TemplateError, match=f"template 'custom' was refused: .*{REFUSED[source]}"):
        templates.render(templates.load("custom", custom_source=source), SINGLE)
    assert time.monotonic() - started < 1.0


def test_a_template_that_takes_memory_is_stopped_by_the_limit():
    doubling = (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s | length }}"
    )
    with pytest.raises(TemplateError, match="needed more than 512 MB to render"):
        templates.render(templates.load("custom", custom_source=doubling), SINGLE)


def test_loops_are_killed_at_the_deadline_and_this_process_stays_free(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", 1.0)
    spin = templates.load(
        "custom",
        custom_source="{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    ticks = []
    stop = threading.Event()

    def count() -> None:  # runs only while this process holds no long C call: the GIL stays free
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError, match="took longer than 1.0 s to render"):
            templates.render(spin, SINGLE)
    finally:
        stop.set()
        counter.join()
    assert time.monotonic() - started < 2.0
    # A render in this process would stop the ticks for the whole second; a busy CPU delays a tick by less.
    assert len(ticks) > 50 and max(b - a for a, b in zip(ticks, ticks[1:], strict=False)) < 0.5
    assert not [p for p in multiprocessing.active_children() if p.name == "tuneboard-render"]


def test_syntax_errors_and_refusals_at_load_never_reach_the_caller_raw():
    with pytest.raises(TemplateError, match="syntax error on line 1"):
        templates.load("custom", custom_source="{% for %}")
    output = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"
    with pytest.raises(TemplateError, match="was refused: it wrote more than"):
        templates.render(templates.load("custom", custom_source=output), SINGLE)
    for source in REFUSED:  # whatever the template does, the caller gets a TemplateError
        try:
            templates.render(templates.load("custom", custom_source=source), SINGLE)
        except TemplateError:
            pass
