"""`python -m finetune export`: the adapter or merged weights, loadable by plain transformers with the run's
exact template, a generation_config.json that stops at the end of turn, the model card with its loss plot;
and every refusal before anything is written. Real tiny runs, the real CLI; a push goes to a local stand-in
for the Hub (HF_ENDPOINT), since no hub is reachable here.

    .venv/bin/pytest tests/test_export.py -q
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from finetune import export, inference, rundir, templates
from finetune.errors import JobError, ModelError

CHAT = [
    {"role": "system", "content": "You are concise."},
    {"role": "user", "content": "Say hello to <user_name>."},
    {"role": "assistant", "content": "Hello, <user_name>!"},
]


@pytest.fixture(scope="module")
def merged(lora_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("merged") / "out"
    out = run_cli("export", str(lora_run), "--merge", "--output", str(folder))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(folder)
    return folder


def test_a_merged_lora_run_reloads_with_plain_transformers_in_its_training_format(
    lora_run: Path, merged: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(merged)
    pinned = rundir.pinned(lora_run)
    (text,) = templates.render_many(pinned.template, [CHAT], templates.special_tokens(tok))
    assert tok.apply_chat_template(CHAT, tokenize=False) == text.text  # byte for byte what training rendered
    (trained,) = templates.encode(tok, pinned.template, [CHAT], assistant_only=False)
    ids = tok.apply_chat_template(CHAT)["input_ids"]
    assert ids == trained.ids
    assert tok.convert_tokens_to_ids("<user_name>") == len(tok) - 1  # the added token, whole
    net = AutoModelForCausalLM.from_pretrained(merged)
    assert net.get_input_embeddings().weight.shape[0] == len(tok)
    adapter = inference.load(lora_run, device="cpu")  # the unmerged adapter on its base
    ids = torch.tensor([ids])
    with torch.no_grad():
        expected, got = adapter.net(input_ids=ids).logits, net(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    stop = GenerationConfig.from_pretrained(merged).eos_token_id
    assert tok.convert_ids_to_tokens(stop if isinstance(stop, list) else [stop])[0] == "<|eot_id|>"
    assert not list(merged.glob("adapter_*")) and (merged / "model.safetensors").is_file()


def test_the_model_card_has_metadata_the_run_and_its_loss_plot(lora_run: Path, merged: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(merged / "README.md")
    assert card.data.library_name == "transformers" and "merged" in card.data.tags
    assert card.data.pipeline_tag == "text-generation"
    text = card.text
    for words in (
        "Chat template `llama3.1`",
        "Tokens added: `<user_name>`",
        "final training loss",
        "learning_rate: 0.003",
        "![loss curve](loss.png)",
        "answers that ended with `<|eot_id|>`",
    ):
        assert words in text, words  # fmt: skip
    assert (merged / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_an_adapter_export_keeps_the_adapter_and_says_vllm_needs_the_merge(
    lora_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "adapter"
    out = run_cli("export", str(lora_run), "--output", str(folder))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "vLLM do not load such adapters: export with --merge" in out.stderr
    names = {p.name for p in folder.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "generation_config.json",
    } <= names
    assert not names & {"optimizer.pt", "scheduler.pt", "trainer_state.json"}
    assert "library_name: peft" in (folder / "README.md").read_text(encoding="utf-8")
    assert export.carries_embeddings(folder)


def test_refusals_come_before_anything_is_written(
    demo_run: Path, lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(JobError, match="full fine-tune.*nothing to merge; export without --merge"):
        export.export(demo_run, merge=True, output=tmp_path / "m")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(JobError, match="HF_TOKEN.*never takes a token from the page"):
        export.export(lora_run, output=tmp_path / "t", push="me/model")
    assert not (tmp_path / "m").exists() and not (tmp_path / "t").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine", encoding="utf-8")
    busy = run_cli("export", str(lora_run), "--output", str(taken))
    assert busy.returncode == 2 and "exists and is not empty" in busy.stderr and "--force" in busy.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    forced = run_cli("export", str(demo_run), "--output", str(taken), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert (taken / "model.safetensors").is_file() and not (taken / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_an_adapter_on_a_base_of_another_shape_is_refused(
    lora_run: Path, tiny_llama: str, tmp_path: Path
) -> None:
    """The run's base was replaced by a model of another hidden size: refused by name, nothing written."""
    other = tmp_path / "other-base"
    shutil.copytree(tiny_llama, other)
    settings = json.loads((other / "config.json").read_text(encoding="utf-8"))
    settings["hidden_size"] *= 2
    (other / "config.json").write_text(json.dumps(settings), encoding="utf-8")
    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("export*", "checkpoint-*"))
    config = (run / "config.yaml").read_text(encoding="utf-8").replace("builtin:tiny-llama", str(other))
    (run / "config.yaml").write_text(config, encoding="utf-8")
    with pytest.raises(ModelError, match="hidden size .* it does not fit; point model.name_or_path"):
        export.export(run, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


class Refusing(http.server.BaseHTTPRequestHandler):
    """The Hub's answer to a token that may not write: 403 on creating the repo."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"error": "You don't have the rights to create a model under this namespace"})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_push_the_token_cannot_write_says_so_and_keeps_the_export(lora_run: Path, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"HF_TOKEN": "hf_not_allowed", "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
           "HF_HUB_OFFLINE": "0"}  # fmt: skip
    try:
        out = run_cli("export", str(lora_run), "--output", str(tmp_path / "x"), "--push", "org/m", env=env)
    finally:
        server.shutdown()
    assert out.returncode == 2, out.stderr[-2000:]
    assert "push to org/m refused: the token in HF_TOKEN cannot write to org/m" in out.stderr
    assert "hf_not_allowed" not in out.stderr + out.stdout  # the token itself is never printed
    assert (tmp_path / "x" / "README.md").is_file()  # the export stays, to push again
