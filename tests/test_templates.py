"""Tests for finetune/templates.py and the presets in presets/templates/.

    .venv/bin/pytest tests/test_templates.py -q

No network: the official templates are copies in tests/fixtures/official_templates/ (their first line names
the Hub repo), and the tokenizers are tiny byte-level BPEs trained here in a few milliseconds.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from finetune import presets, templates
from finetune.templates import TemplateError

OFFICIAL_DIR = Path(__file__).parent / "fixtures" / "official_templates"
# bos_token / eos_token as each official tokenizer_config.json defines them (Qwen2.5 has no bos_token).
OFFICIAL_TOKENS = {
    "gemma2": ("<bos>", "<eos>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("", "<|im_end|>"),
    "mistral": ("<s>", "</s>"),
    "phi3": ("<s>", "<|endoftext|>"),
}
# Presets whose official template renders a leading system message as is.
SYSTEM_NATIVE = ("llama3.1", "chatml", "phi3")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task."
    " Write a response that appropriately completes the request."
)
# What the mask must cover in each assistant turn, given the reply text.
MASKED_REPLY = {
    "gemma2": "{}<end_of_turn>",
    "llama3.1": "{}<|eot_id|>",
    "chatml": "{}<|im_end|>",
    "mistral": " {}</s>",
    "phi3": "{}<|end|>",
    "alpaca": "{}</s>",
}
MASK_TOKENS = {"alpaca": ("<s>", "</s>"), **OFFICIAL_TOKENS}

SYSTEM = {"role": "system", "content": "You are a concise assistant. 簡潔に答えてください。"}
CONVERSATIONS = {
    "single": [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ],
    "multi": [
        {"role": "user", "content": "Hello! How are you today?"},
        {"role": "assistant", "content": "I'm fine, thank you. How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."},
        {"role": "user", "content": "Another one, please."},
        {"role": "assistant", "content": "I would tell you a UDP joke,\nbut you might not get it."},
    ],
    "japanese": [
        {"role": "user", "content": "こんにちは。今日の天気は？"},
        {"role": "assistant", "content": "こんにちは！今日は晴れです。"},
        {"role": "user", "content": "明日はどうですか？"},
        {"role": "assistant", "content": "明日は雨の予報です。傘を持って行きましょう。"},
    ],
}
FOLLOW_UP = {"role": "user", "content": "Thanks! ありがとう。"}


def official(name: str) -> templates.Template:
    """The official template as a custom one, without the fixture's one-line source comment."""
    text = (OFFICIAL_DIR / f"{name}.jinja").read_text(encoding="utf-8")
    assert text.startswith("{#- source: ")
    return templates.load("custom", custom_source=text.split("\n", 1)[1])


def conversation(kind: str, *, system: bool, add_generation_prompt: bool) -> list[dict]:
    """A finished conversation, or one that ends with a user turn when a reply is to be generated."""
    messages = ([SYSTEM] if system else []) + CONVERSATIONS[kind]
    return messages + [FOLLOW_UP] if add_generation_prompt else messages


def both(name: str, messages: list[dict], add_generation_prompt: bool) -> tuple[str, str]:
    bos, eos = OFFICIAL_TOKENS[name]
    kwargs = {"bos_token": bos, "eos_token": eos, "add_generation_prompt": add_generation_prompt}
    return templates.render(templates.load(name), messages, **kwargs), templates.render(
        official(name), messages, **kwargs
    )


def tiny_tokenizer(
    bos: str | None, eos: str | None, specials: list[str], chat_template: str | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few lines (round-trips any text), plus the given special tokens."""
    lines = [m["content"] for conv in CONVERSATIONS.values() for m in conv] + [SYSTEM["content"]]
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(lines, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos)
    extra = [token for token in specials if token not in (bos, eos)]
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.chat_template = chat_template
    return tokenizer


def masked_runs(tokenizer: PreTrainedTokenizerFast, ids: list[int], mask: list[int]) -> list[str]:
    """The decoded text of each stretch of consecutive masked tokens."""
    runs: list[list[int]] = []
    previous = 0
    for token, on in zip(ids, mask, strict=True):
        if on and not previous:
            runs.append([])
        if on:
            runs[-1].append(token)
        previous = on
    return [tokenizer.decode(run) for run in runs]


# --- the presets match the official templates ------------------------------------------------------------


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("kind", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(OFFICIAL_TOKENS))
def test_preset_renders_like_official_without_system(name: str, kind: str, add_generation_prompt: bool):
    messages = conversation(kind, system=False, add_generation_prompt=add_generation_prompt)
    ours, theirs = both(name, messages, add_generation_prompt)
    assert ours == theirs
    assert messages[-1]["content"] in ours


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("kind", list(CONVERSATIONS))
@pytest.mark.parametrize("name", SYSTEM_NATIVE)
def test_preset_renders_like_official_with_system(name: str, kind: str, add_generation_prompt: bool):
    messages = conversation(kind, system=True, add_generation_prompt=add_generation_prompt)
    ours, theirs = both(name, messages, add_generation_prompt)
    assert ours == theirs
    assert SYSTEM["content"] in ours


def test_single_turn_exact_strings():
    """Spot checks written out from the documented formats, independent of the fixtures."""
    messages = CONVERSATIONS["single"]
    gemma = templates.render(
        templates.load("gemma2"), messages, bos_token="<bos>", add_generation_prompt=False
    )
    assert gemma == (
        "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
        "<start_of_turn>model\nParis.<end_of_turn>\n"
    )
    llama = templates.render(
        templates.load("llama3.1"), messages[:1], bos_token="<|begin_of_text|>", add_generation_prompt=True
    )
    assert llama == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama_date_string_is_passed_through():
    messages = CONVERSATIONS["single"]
    ours, theirs = (
        templates.render(t, messages, bos_token="<|begin_of_text|>", date_string="01 Jan 2025")
        for t in (templates.load("llama3.1"), official("llama3.1"))
    )
    assert ours == theirs
    assert "Today Date: 01 Jan 2025\n\n" in ours


def test_chatml_default_system_message_can_be_left_out():
    messages = CONVERSATIONS["single"][:1]
    qwen = templates.render(templates.load("chatml"), messages)
    plain = templates.render(templates.load("chatml"), messages, default_system_message="")
    assert qwen.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert plain == "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"


# --- system-message choices -------------------------------------------------------------------------------


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("kind", list(CONVERSATIONS))
def test_gemma2_merges_system_into_first_user_turn(kind: str, add_generation_prompt: bool):
    messages = conversation(kind, system=True, add_generation_prompt=add_generation_prompt)
    merged = [dict(m) for m in messages[1:]]
    merged[0]["content"] = SYSTEM["content"] + "\n\n" + merged[0]["content"]
    kwargs = {"bos_token": "<bos>", "eos_token": "<eos>", "add_generation_prompt": add_generation_prompt}
    ours = templates.render(templates.load("gemma2"), messages, **kwargs)
    assert ours == templates.render(official("gemma2"), merged, **kwargs)
    assert templates.load("gemma2").meta["system"] == "merge_into_first_user"
    with pytest.raises(TemplateError, match="System role not supported"):
        templates.render(official("gemma2"), messages, bos_token="<bos>")


@pytest.mark.parametrize("kind", list(CONVERSATIONS))
def test_mistral_prepends_system_to_last_user_message(kind: str):
    prompt = conversation(kind, system=True, add_generation_prompt=True)
    ours, theirs = both("mistral", prompt, True)
    assert ours == theirs  # a prompt for generation: identical to the official template
    assert ours.endswith("[INST] " + SYSTEM["content"] + "\n\n" + FOLLOW_UP["content"] + "[/INST]")
    assert ours.count(SYSTEM["content"]) == 1

    finished = conversation(kind, system=True, add_generation_prompt=False)
    ours, theirs = both("mistral", finished, False)
    last_user = [m for m in finished if m["role"] == "user"][-1]["content"]
    # Our documented difference: the official Jinja drops the system message when a reply follows.
    assert SYSTEM["content"] not in theirs
    assert ours == theirs.replace(
        f"[INST] {last_user}[/INST]", f"[INST] {SYSTEM['content']}\n\n{last_user}[/INST]"
    )


def test_alpaca_format_and_system_preamble():
    render = templates.render
    alpaca = templates.load("alpaca")
    single = CONVERSATIONS["single"]
    assert render(alpaca, single, bos_token="<s>", eos_token="</s>") == (
        f"<s>{ALPACA_PREAMBLE}\n\n### Instruction:\nWhat is the capital of France?\n\n"
        "### Response:\nParis.</s>"
    )
    assert render(alpaca, single[:1], add_generation_prompt=True) == (
        f"{ALPACA_PREAMBLE}\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n"
    )
    with_system = render(alpaca, [SYSTEM, *CONVERSATIONS["japanese"]], eos_token="</s>")
    assert with_system.startswith(SYSTEM["content"] + "\n\n### Instruction:\nこんにちは。今日の天気は？\n\n")
    assert ALPACA_PREAMBLE not in with_system
    last_exchange = (
        "### Instruction:\n明日はどうですか？\n\n### Response:\n明日は雨の予報です。傘を持って行きましょう。"
    )
    assert with_system.endswith("</s>\n\n" + last_exchange + "</s>")


def test_system_message_in_the_middle_is_refused_with_the_template_name():
    messages = [*CONVERSATIONS["single"], SYSTEM, FOLLOW_UP]
    for name in ("gemma2", "mistral", "alpaca"):
        with pytest.raises(TemplateError, match=f"template '{name}'.*roles"):
            templates.render(templates.load(name), messages, bos_token="<s>", eos_token="</s>")


def test_model_template_that_refuses_system_gives_a_clear_error():
    tokenizer = tiny_tokenizer("<bos>", "<eos>", [], chat_template=official("gemma2").source)
    model = templates.load("model", tokenizer=tokenizer)
    with pytest.raises(TemplateError, match="template 'model': System role not supported"):
        templates.render(model, [SYSTEM, *CONVERSATIONS["single"]], bos_token="<bos>")


# --- loss mask ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CONVERSATIONS))
@pytest.mark.parametrize("name", list(MASKED_REPLY))
def test_assistant_mask_covers_exactly_the_replies(name: str, kind: str):
    template = templates.load(name)
    bos, eos = MASK_TOKENS[name]
    tokenizer = tiny_tokenizer(bos or None, eos, template.meta["special_tokens"])
    messages = [SYSTEM, *CONVERSATIONS[kind]]
    ids, mask = templates.assistant_mask(tokenizer, template, messages)

    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert masked_runs(tokenizer, ids, mask) == [MASKED_REPLY[name].format(reply) for reply in replies]
    assert set(mask) == {0, 1} and len(ids) == len(mask)
    # The ids are exactly the rendered text, so what the preview shows is what training sees.
    specials = {"bos_token": bos, "eos_token": eos}
    assert tokenizer.decode(ids) == templates.render(template, messages, **specials)


def test_assistant_mask_truncates_ids_and_mask_together():
    template = templates.load("chatml")
    tokenizer = tiny_tokenizer(None, "<|im_end|>", template.meta["special_tokens"])
    ids, mask = templates.assistant_mask(tokenizer, template, CONVERSATIONS["multi"], max_length=20)
    assert len(ids) == len(mask) == 20


def test_assistant_mask_needs_generation_markers():
    tokenizer = tiny_tokenizer("<bos>", "<eos>", ["<start_of_turn>", "<end_of_turn>"])
    with pytest.raises(TemplateError, match="no \\{% generation %\\} markers.*train_on: all"):
        templates.assistant_mask(tokenizer, official("gemma2"), CONVERSATIONS["single"])


@pytest.mark.parametrize("model", ["builtin:tiny-llama", "builtin:tiny-gemma"])
def test_token_counts_are_the_tokenizer_calls_lengths(model: str):
    from finetune import builtin

    tokenizer = AutoTokenizer.from_pretrained(builtin.resolve(model))
    texts = [m["content"] for conv in CONVERSATIONS.values() for m in conv] + ["", " x ", "\n\n"]
    texts.append(f"{tokenizer.bos_token}Hi{tokenizer.eos_token}  (special tokens in the text)")
    for specials in (False, True):
        called = [len(ids) for ids in tokenizer(texts, add_special_tokens=specials)["input_ids"]]
        assert templates.token_counts(tokenizer, texts, add_special_tokens=specials) == called
    tokenizer.backend_tokenizer.enable_truncation(3)  # set on the Rust tokenizer: called as it is then
    assert templates.token_counts(tokenizer, texts) == [
        len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts
    ]


@pytest.mark.parametrize("name", ["llama3.1", "gemma2", "chatml"])
def test_lengths_are_encodes_without_the_masks(name: str):
    template = templates.load(name)
    bos, eos = MASK_TOKENS[name]
    tokenizer = tiny_tokenizer(bos or None, eos, template.meta["special_tokens"])
    conversations = [CONVERSATIONS[kind] for kind in CONVERSATIONS] * 3
    encoded = templates.encode(tokenizer, template, conversations)
    for batch in (templates.BATCH, 2):  # one sandbox child, or several
        assert templates.lengths(tokenizer, template, conversations, batch=batch) == [
            len(e.ids) for e in encoded
        ]
    assert templates.lengths(tokenizer, template, []) == []


def test_a_child_is_sent_a_bounded_number_of_characters(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(templates, "BATCH_CHARS", 100)
    long = [{"role": "user", "content": "x" * 150}]
    short = [{"role": "user", "content": "y" * 40}]
    chunks = list(templates._chunks([short, short, long, short, short, short], batch=1000))
    assert [(start, len(chunk)) for start, chunk, _ in chunks] == [(0, 2), (2, 1), (3, 2), (5, 1)]
    rendered = templates.render_many(templates.load("chatml"), [short, long, short], batch=1000)
    assert ["x" * 150 in r.text for r in rendered] == [False, True, False]


@pytest.mark.parametrize("name", list(MASKED_REPLY))
def test_every_preset_has_markers_and_no_official_does(name: str):
    assert templates.has_generation_markers(templates.load(name).source)
    if name in OFFICIAL_TOKENS:
        assert not templates.has_generation_markers(official(name).source)


# --- loading and bad input --------------------------------------------------------------------------------


def test_list_templates_has_every_preset_and_the_specials():
    expected = ["alpaca", "chatml", "gemma2", "llama3.1", "mistral", "phi3", "model", "custom"]
    assert templates.list_templates() == expected


@pytest.mark.parametrize("name", presets.names("templates"))
def test_every_preset_metadata_is_complete(name: str):
    meta = templates.load(name).meta
    assert isinstance(meta["name"], str) and meta["name"]
    assert isinstance(meta["description"], str) and "\n" not in meta["description"]
    assert isinstance(meta["families"], list)
    assert meta["system"] in ("supported", "merge_into_first_user", "prepend_last_user", "preamble")
    assert isinstance(meta["generation_prompt"], str) and isinstance(meta["stop_tokens"], list)
    # The literals the metadata lists are the ones a conversation with a system message actually writes.
    bos, eos = MASK_TOKENS[name]
    finished = templates.render(
        templates.load(name), [SYSTEM, *CONVERSATIONS["single"]], bos_token=bos, eos_token=eos
    )
    for token in meta["special_tokens"] + [meta["bos_token"], meta["eos_token"]]:
        assert token is None or token in finished, token
    assert meta["bos_token"] is None or finished.startswith(meta["bos_token"])
    prompt = templates.render(templates.load(name), CONVERSATIONS["single"][:1], add_generation_prompt=True)
    assert prompt.endswith(meta["generation_prompt"])


def test_unknown_name_lists_the_choices():
    with pytest.raises(TemplateError, match="unknown template 'gemma9'.*gemma2.*custom"):
        templates.load("gemma9")


def test_model_template_needs_a_tokenizer_with_one():
    with pytest.raises(TemplateError, match="no chat template.*pick a preset"):
        templates.load("model", tokenizer=tiny_tokenizer("<s>", "</s>", []))
    with pytest.raises(TemplateError, match="no chat template"):
        templates.load("model")
    own = official("phi3").source
    tokenizer = tiny_tokenizer("<s>", "</s>", [], chat_template=own)
    assert templates.load("model", tokenizer=tokenizer).source == own


def test_custom_template_bad_input():
    with pytest.raises(TemplateError, match="'custom' is empty"):
        templates.load("custom", custom_source="  \n")
    with pytest.raises(TemplateError, match="syntax error on line 2"):
        templates.load("custom", custom_source="{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    with pytest.raises(TemplateError, match="the limit is 65536"):
        templates.load("custom", custom_source="x" * (templates.MAX_SOURCE_BYTES + 1))
    assert templates.load("custom", custom_source="x" * templates.MAX_SOURCE_BYTES).id == "custom"


def test_runaway_custom_template_is_stopped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(templates, "MAX_RENDER_SECONDS", 0.3)
    spin = templates.load(
        "custom",
        custom_source="{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match="'custom' took longer than 0.3 s to render; check its loops"):
        templates.render(spin, CONVERSATIONS["single"])
    assert time.monotonic() - started < 1.5
    assert not [p for p in multiprocessing.active_children() if p.name == "tuneboard-render"]  # killed

    huge = templates.load("custom", custom_source="{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}")
    with pytest.raises(TemplateError, match="was refused: it wrote more than 1000\\d+ characters"):
        templates.render(huge, CONVERSATIONS["single"])


def test_template_errors_carry_the_template_message():
    failing = templates.load("custom", custom_source="{{ raise_exception('Only user turns, please') }}")
    with pytest.raises(TemplateError, match="template 'custom': Only user turns, please"):
        templates.render(failing, CONVERSATIONS["single"])
    broken = templates.load("custom", custom_source="{{ messages[0]['content'] + 1 }}")
    with pytest.raises(TemplateError, match="'custom' failed to render: TypeError"):
        templates.render(broken, CONVERSATIONS["single"])


# --- check and detect ---------------------------------------------------------------------------------------


def test_check_names_missing_special_tokens():
    gemma = templates.load("gemma2")
    bare = tiny_tokenizer("<bos>", "<eos>", [])
    warnings = templates.check(gemma, bare)
    assert len(warnings) == 2
    assert "'<start_of_turn>'" in warnings[0] and "'<end_of_turn>'" in warnings[1]
    assert all("tokens.add with special: true" in w for w in warnings)
    assert templates.check(gemma, tiny_tokenizer("<bos>", "<eos>", gemma.meta["special_tokens"])) == []
    no_eos = templates.check(templates.load("alpaca"), tiny_tokenizer(None, None, []))
    assert len(no_eos) == 1 and "this tokenizer has none" in no_eos[0]


def test_check_explains_what_happens_to_a_system_message():
    messages = [SYSTEM, *CONVERSATIONS["single"]]
    (gemma,) = templates.check(templates.load("gemma2"), messages=messages)
    assert "'gemma2' has no system role" in gemma and "merged into the first user turn" in gemma
    (mistral,) = templates.check(templates.load("mistral"), messages=messages)
    assert "prepended to the last user message" in mistral
    (alpaca,) = templates.check(templates.load("alpaca"), messages=messages)
    assert "preamble" in alpaca
    assert templates.check(templates.load("chatml"), messages=messages) == []
    assert templates.check(templates.load("gemma2"), messages=CONVERSATIONS["single"]) == []


def test_check_warns_when_the_pick_differs_from_the_model_family():
    (warning,) = templates.check(templates.load("chatml"), model_family_template="llama3.1")
    expected = "this model was instruction-tuned with 'llama3.1'; further tuning should keep 'llama3.1'"
    assert warning.startswith(expected)
    assert templates.check(templates.load("llama3.1"), model_family_template="llama3.1") == []


@pytest.mark.parametrize("name", list(OFFICIAL_TOKENS))
def test_detect_finds_the_preset_for_an_official_template(name: str):
    bos, eos = OFFICIAL_TOKENS[name]
    tokenizer = tiny_tokenizer(bos or None, eos, [], chat_template=official(name).source)
    assert templates.detect(tokenizer) == name


def test_detect_returns_none_for_unknown_or_missing_templates():
    other = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    assert templates.detect(tiny_tokenizer("<s>", "</s>", [], chat_template=other)) is None
    assert templates.detect(tiny_tokenizer("<s>", "</s>", [])) is None
