"""Tests for finetune/tokens.py: adding tokens, the pad policy, before/after pieces, resizing, and training
the new rows under LoRA on an untied (tiny Llama) and a tied (tiny Gemma) model.

    .venv/bin/python -m pytest tests/test_tokens.py -q

The last group is the point of the module: after a real LoRA run, the new token's rows in the input
embedding and in the output head have learned, every old row is bit-for-bit unchanged, and the adapter in
RUN_DIR/final reloads with exactly the trained rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune import config, preflight, tokens
from finetune.config import ConfigError, TokensConfig

NEW = "<user_name>"
LLAMA_PAD = "<|finetune_right_pad_id|>"  # presets/models/llama3.1.yaml: Meta's reserved pad


@pytest.fixture
def llama_tok(tiny_llama: str):
    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture
def gemma_tok(tiny_gemma: str):
    return AutoTokenizer.from_pretrained(tiny_gemma)


# ---------------------------------------------------------------- apply


def test_apply_adds_a_special_token_as_one_piece(llama_tok):
    before = llama_tok.encode(NEW, add_special_tokens=False)
    assert len(before) > 1
    size = len(llama_tok)
    changes = tokens.apply(llama_tok, TokensConfig(add=[NEW]), LLAMA_PAD)
    new_id = llama_tok.convert_tokens_to_ids(NEW)
    assert changes.new_ids == [new_id] and new_id == size
    assert changes.pieces == {new_id: before}
    assert llama_tok.encode(f"Hi {NEW}!", add_special_tokens=False).count(new_id) == 1
    assert llama_tok.added_tokens_decoder[new_id].special
    assert NEW not in llama_tok.decode(
        llama_tok.encode(f"Hi {NEW}", add_special_tokens=False), skip_special_tokens=True
    )


def test_apply_adds_a_normal_token_that_survives_decoding(llama_tok):
    cfg = TokensConfig(add=[NEW, "<kept>"], special={"<kept>": False})
    tokens.apply(llama_tok, cfg, LLAMA_PAD)
    kept = llama_tok.convert_tokens_to_ids("<kept>")
    ids = llama_tok.encode("a <kept> b", add_special_tokens=False)
    assert kept in ids
    assert not llama_tok.added_tokens_decoder[kept].special
    assert "<kept>" in llama_tok.decode(ids, skip_special_tokens=True)
    assert llama_tok.added_tokens_decoder[llama_tok.convert_tokens_to_ids(NEW)].special  # mapping default


def test_token_already_in_the_vocabulary_names_its_index(llama_tok):
    with pytest.raises(tokens.TokenError) as info:
        tokens.apply(llama_tok, TokensConfig(add=[NEW, "<|eot_id|>"]))
    assert info.value.field == "tokens.add[1]"
    assert "already in the vocabulary" in str(info.value)
    assert NEW not in llama_tok.get_vocab()  # refused before anything was added


def test_empty_token_is_refused_by_the_schema():
    with pytest.raises(ConfigError) as info:
        config.from_dict({"tokens": {"add": [NEW, ""]}})
    assert info.value.problems[0][0] == "tokens.add[1]"


# ---------------------------------------------------------------- pad policy


def test_gemma_keeps_its_own_pad(gemma_tok):
    changes = tokens.apply(gemma_tok, TokensConfig(), "<pad>")
    assert gemma_tok.pad_token == "<pad>"
    assert not changes.pad_added and changes.new_ids == []


def test_llama_pads_with_the_familys_reserved_token_through_preflight(tiny_llama: str):
    checked = preflight.run(config.from_dict({"model": {"name_or_path": "builtin:tiny-llama"}}))
    assert checked.tokenizer.pad_token == LLAMA_PAD
    assert checked.tokenizer.pad_token != checked.tokenizer.eos_token
    assert checked.tokenizer_before.pad_token is None  # the model itself has none
    assert not checked.token_changes.pad_added


def test_auto_pad_without_a_family_adds_a_new_pad_never_eos(llama_tok):
    size = len(llama_tok)
    changes = tokens.apply(llama_tok, TokensConfig(pad="auto"))
    assert llama_tok.pad_token == tokens.PAD_FALLBACK
    assert llama_tok.pad_token != llama_tok.eos_token
    assert changes.pad_added and changes.new_ids == [size]


def test_auto_pad_replaces_a_pad_that_is_eos(llama_tok):
    llama_tok.pad_token = llama_tok.eos_token
    tokens.apply(llama_tok, TokensConfig(pad="auto"), llama_tok.eos_token)  # a family pad equal to EOS too
    assert llama_tok.pad_token != llama_tok.eos_token


def test_eos_pad_policy_reuses_eos(llama_tok):
    changes = tokens.apply(llama_tok, TokensConfig(pad="eos"), LLAMA_PAD)
    assert llama_tok.pad_token == llama_tok.eos_token
    assert not changes.pad_added


# ---------------------------------------------------------------- compare


def test_compare_shows_pieces_before_and_one_token_after(llama_tok):
    import copy

    before = copy.deepcopy(llama_tok)
    tokens.apply(llama_tok, TokensConfig(add=[NEW]), LLAMA_PAD)
    pieces = tokens.compare(before, llama_tok, NEW)
    assert len(pieces["before"]) > 1
    assert "".join(pieces["before"]) == NEW
    assert pieces["after"] == [NEW]
    sentence = tokens.compare(before, llama_tok, f"Hello, {NEW}!")
    assert NEW in sentence["after"] and NEW not in sentence["before"]


# ---------------------------------------------------------------- resize and init


@pytest.mark.parametrize("init", ["mean_of_pieces", "mean"])
def test_resize_and_init_fills_the_new_rows(tiny_llama: str, llama_tok, init: str):
    net = AutoModelForCausalLM.from_pretrained(tiny_llama)
    old_in = net.get_input_embeddings().weight.detach().clone()
    old_out = net.get_output_embeddings().weight.detach().clone()
    changes = tokens.apply(llama_tok, TokensConfig(add=[NEW], init=init), LLAMA_PAD)
    tokens.resize_and_init(net, llama_tok, changes, init)
    new_id = changes.new_ids[0]
    pieces = changes.pieces[new_id]
    for layer, old in ((net.get_input_embeddings(), old_in), (net.get_output_embeddings(), old_out)):
        weight = layer.weight.detach()
        assert weight.shape[0] == len(llama_tok) == old.shape[0] + 1
        assert torch.equal(weight[: old.shape[0]], old)
        expected = old[pieces].mean(dim=0) if init == "mean_of_pieces" else old.mean(dim=0)
        torch.testing.assert_close(weight[new_id], expected)
    assert not torch.equal(old_in[pieces].mean(dim=0), old_in.mean(dim=0))  # the two inits differ


# ---------------------------------------------------------------- the new rows learn under LoRA

MODELS = {
    "llama": [],
    "gemma": ["--model.name_or_path", "builtin:tiny-gemma", "--template.name", "gemma2"],
}


@pytest.fixture(scope="module")
def user_name_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 chats that all use <user_name> in both turns, so its rows get gradient at every step."""
    path = tmp_path_factory.mktemp("tokens") / "user_name.jsonl"
    lines = []
    for i in range(64):
        messages = [
            {"role": "user", "content": f"Hi, I'm {NEW}. What is {i} + 1?"},
            {"role": "assistant", "content": f"Hello, {NEW}! {i} + 1 = {i + 1}."},
        ]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=list(MODELS))
def lora_run(request, tmp_path_factory, user_name_data: Path, tiny_llama: str, tiny_gemma: str) -> dict:
    """A short real LoRA run with tokens.add [<user_name>], and the rows it started from."""
    overrides = [
        "--method", "lora",
        "--tokens.add", json.dumps([NEW]),
        "--dataset.path", str(user_name_data),
        "--training.max_steps", "8",
        "--training.learning_rate", "1e-2",
        "--training.lr_scheduler_type", "constant",
        "--training.warmup_ratio", "0",
        "--training.logging_steps", "1",
        "--training.save_strategy", "no",
        *MODELS[request.param],
    ]  # fmt: skip
    run_dir = tmp_path_factory.mktemp(f"lora-{request.param}") / "run"
    result = run_cli("train", "presets/demo.yaml", *overrides, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LoRA:" in result.stdout

    # The starting point, computed the way training computes it: preflight's tokenizer, then resize_and_init.
    cfg = config.load("presets/demo.yaml", overrides)
    checked = preflight.run(cfg)
    base_path = tiny_gemma if request.param == "gemma" else tiny_llama
    base = AutoModelForCausalLM.from_pretrained(base_path)
    old_rows = base.get_input_embeddings().weight.shape[0]
    tokens.resize_and_init(base, checked.tokenizer, checked.token_changes, cfg.tokens.init)
    return {
        "name": request.param,
        "final": run_dir / "final",
        "base_path": base_path,
        "new_id": checked.tokenizer.convert_tokens_to_ids(NEW),
        "old_rows": old_rows,
        "init_in": base.get_input_embeddings().weight.detach().clone(),
        "init_out": base.get_output_embeddings().weight.detach().clone(),
        "tied": base.get_input_embeddings().weight is base.get_output_embeddings().weight,
    }


def trained_rows(final: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The input embedding and output head as saved with the adapter (save_embedding_layers)."""
    from safetensors.torch import load_file

    saved = load_file(final / "adapter_model.safetensors")
    inp = [v for k, v in saved.items() if k.endswith("embed_tokens.weight")]
    out = [v for k, v in saved.items() if k.endswith("lm_head.weight")]
    assert len(inp) == 1, sorted(saved)
    return inp[0], (out[0] if out else inp[0])


def test_models_are_tied_as_described(lora_run: dict):
    assert lora_run["tied"] is (lora_run["name"] == "gemma")


def test_new_token_rows_changed_in_embedding_and_head(lora_run: dict):
    inp, out = trained_rows(lora_run["final"])
    new_id = lora_run["new_id"]
    assert new_id == lora_run["old_rows"]  # the first row after the original vocabulary
    assert inp.shape == lora_run["init_in"].shape
    assert not torch.allclose(inp[new_id], lora_run["init_in"][new_id])
    assert not torch.allclose(out[new_id], lora_run["init_out"][new_id])


def test_old_rows_are_unchanged(lora_run: dict):
    inp, out = trained_rows(lora_run["final"])
    old = lora_run["old_rows"]
    assert torch.equal(inp[:old], lora_run["init_in"][:old])
    assert torch.equal(out[:old], lora_run["init_out"][:old])


def test_saved_adapter_reloads_with_the_trained_rows(lora_run: dict):
    from peft import PeftModel

    final, new_id = lora_run["final"], lora_run["new_id"]
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.convert_tokens_to_ids(NEW) == new_id
    assert tok.encode(f"Hi {NEW}", add_special_tokens=False).count(new_id) == 1
    base = AutoModelForCausalLM.from_pretrained(lora_run["base_path"])
    base.resize_token_embeddings(len(tok))
    model = PeftModel.from_pretrained(base, final)
    inp, out = trained_rows(final)
    torch.testing.assert_close(
        model.get_input_embeddings().weight[new_id].detach(), inp[new_id], rtol=0, atol=0
    )
    torch.testing.assert_close(
        model.get_output_embeddings().weight[new_id].detach(), out[new_id], rtol=0, atol=0
    )
    merged = model.merge_and_unload()
    assert torch.equal(merged.get_input_embeddings().weight.detach(), inp)
    assert torch.equal(merged.get_output_embeddings().weight.detach(), out)
    with torch.no_grad():  # the reloaded model runs with the new token in its input
        ids = tok(f"Hi {NEW}", return_tensors="pt")
        assert merged(**ids).logits.shape[-1] == len(tok)
