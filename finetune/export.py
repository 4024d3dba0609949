"""Take it away: a run's weights as a folder any Hugging Face tool loads, with the run's exact chat template,
its tokens, a generation_config.json that stops at the end of turn, and a model card; pushed to the Hub on
request.

    python -m finetune export RUN_DIR [--checkpoint N] [--merge] [--output DIR] [--force] [--push ORG/NAME]
    .venv/bin/pytest tests/test_export.py -q

- Without --merge: the LoRA adapter as trained (or a full fine-tune's weights), loadable with peft.
- --merge: the adapter merged into its base (safetensors, standard layout): plain transformers loads it,
  and so does every serving engine. A LoRA run that trained new token rows needs it: serving engines such
  as vLLM refuse adapters that carry embedding layers.
- The folder is written beside its place and moved in when complete: a failure leaves nothing half-written,
  and an existing folder that is not empty is kept unless --force.
- --push uses HF_TOKEN from the environment (on a Space: its secret) and nothing else; private by default.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune import inference, model, rundir, runs
from finetune.errors import JobError, ModelError

VLLM_NOTE = (
    "this adapter carries trained embedding rows for the tokens the run added; serving engines such as vLLM "
    "do not load such adapters: export with --merge (the page: 'Merge into the base') for them"
)
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


@dataclass
class Exported:
    folder: Path
    merged: bool
    notes: list[str]
    url: str | None = None


def export(
    run_dir: Path,
    *,
    checkpoint: int | None = None,
    merge: bool = False,
    output: Path | None = None,
    force: bool = False,
    push: str | None = None,
    private: bool = True,
    say: Callable[[str], None] = lambda line: None,
) -> Exported:
    """Write the export folder (and push it); every refusal comes before anything is written."""
    run_dir = Path(run_dir)
    weights = inference.weights_dir(run_dir, checkpoint)
    config = cfg.load(run_dir / rundir.CONFIG)
    adapter = (weights / "adapter_config.json").is_file()
    if merge and not adapter:
        raise JobError(
            f"run {run_dir.name} is a full fine-tune: {weights.name}/ already holds every weight, so there "
            "is nothing to merge; export without --merge"
        )
    target = Path(output) if output else run_dir / ("export-merged" if merge else "export")
    _check_target(target, force)
    token = _token() if push else None
    if adapter:
        check_fits(config, weights)
    notes = [VLLM_NOTE] if adapter and not merge and carries_embeddings(weights) else []
    for note in notes:
        say(f"note: {note}")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=_parent(target)) as tmp:
        folder = Path(tmp) / "out"
        say(f"writing {'merged weights' if merge else weights.name + '/'} to {target}")
        write_folder(run_dir, config, weights, folder, merge=merge)
        _move_into_place(folder, target)
    done = Exported(target, merge, notes)
    if push:
        say(f"pushing {target} to {push} ({'private' if private else 'public'})")
        done.url = push_folder(target, push, token, private=private)
    return done


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise JobError(f"the export folder {target} is a file; name a folder (--output)")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise JobError(
            f"the export folder {target} exists and is not empty; choose another (--output) or replace it "
            "(--force; in the page: Replace an earlier export)"
        )


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent  # the temporary folder is on the same disk, so the move is a rename


def _move_into_place(folder: Path, target: Path) -> None:
    """Rename the finished folder onto ``target``; an old one (--force) is removed only after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    folder.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise JobError(
            "--push needs a Hugging Face token with write access in the environment variable HF_TOKEN "
            "(on a Space: a secret named HF_TOKEN); Tuneboard never takes a token from the page or a file"
        )
    return token


def carries_embeddings(folder: Path) -> bool:
    """Does the adapter hold whole embedding / output layers (saved for the new token rows)?"""
    from safetensors import safe_open

    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as f:
        return any(("embed_tokens" in k or "lm_head" in k) and "lora_" not in k for k in f.keys())  # noqa: SIM118


def check_fits(config: cfg.Config, weights: Path) -> None:
    """An adapter loads only on a base of the shape it trained on (its hidden size, read from the saved
    embeddings or the attention projections' LoRA matrices): else every server refuses it later."""
    from safetensors import safe_open

    base = model.load_config(config.model)
    hidden = (base.get_text_config() if hasattr(base, "get_text_config") else base).hidden_size
    width = None
    with safe_open(str(weights / ADAPTER_FILES[0]), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            shape = f.get_slice(key).get_shape()
            if "embed_tokens" in key and "lora_" not in key:
                width = shape[1]
            elif "q_proj.lora_A" in key and width is None:
                width = shape[1]  # (r, in_features): q_proj reads the hidden state
    if width is not None and width != hidden:
        raise ModelError(
            "model.name_or_path",
            f"the adapter in {weights} was trained on a base of hidden size {width}; "
            f"{config.model.name_or_path!r} has {hidden}: it does not fit; point model.name_or_path at the "
            "model the run trained from",
        )


def write_folder(run_dir: Path, config: cfg.Config, weights: Path, folder: Path, *, merge: bool) -> None:
    """The weights, the tokenizer with the run's template, generation_config.json, the card and its plot."""
    pinned = rundir.pinned(run_dir)
    template = pinned.template if pinned and config.task == "sft" else None
    tokenizer = _tokenizer(weights, template)
    folder.mkdir(parents=True)
    if merge:
        net = merged_model(config, weights, tokenizer)
        net.save_pretrained(str(folder), safe_serialization=True)
    else:
        _copy_weights(weights, folder)
    tokenizer.save_pretrained(str(folder))
    if config.task != "classification":
        generation_config(config, tokenizer, template).save_pretrained(str(folder))
    from finetune import card, figures

    rows = runs.read_metrics(run_dir)
    curves = {"training loss": runs.series(rows, "loss"), "validation loss": runs.series(rows, "eval_loss")}
    if curves["training loss"]:
        figures.loss_png(curves, folder / card.LOSS_PNG)
    (folder / "README.md").write_text(card.render(run_dir, config, weights, merged=merge), encoding="utf-8")


def _tokenizer(weights: Path, template: Any) -> Any:
    tokenizer = inference.run_tokenizer(weights)
    if template is not None:
        tokenizer.chat_template = template.source  # the exact template the run trained with
    return tokenizer


def _copy_weights(weights: Path, folder: Path) -> None:
    """The model or adapter files; not the optimizer, scheduler or RNG state of a checkpoint."""
    skip = {"optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", "trainer_state.json"}
    for path in weights.iterdir():
        if path.is_file() and path.name not in skip and not path.name.startswith("rng_state"):
            shutil.copy2(path, folder / path.name)


def merged_model(config: cfg.Config, weights: Path, tokenizer: Any) -> Any:
    """The adapter merged into a full-precision copy of its base (a 4-bit base would round the merge)."""
    unquantized = config.model_copy(update={"method": "lora"}) if config.method == "qlora" else config
    net = inference.tuned_model(unquantized, model.detect_device(), weights, tokenizer)
    return net.merge_and_unload()


def generation_config(config: cfg.Config, tokenizer: Any, template: Any) -> Any:
    """Stop at the template's end of turn (then the tokenizer's EOS); the run's sampling settings."""
    from transformers import GenerationConfig

    loaded = inference.Loaded(Path("."), config, None, tokenizer, template, "", "cpu")
    stop = inference.stop_ids(loaded)
    g = config.generation
    sample = g.temperature > 0
    return GenerationConfig(
        eos_token_id=stop[0] if len(stop) == 1 else stop,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        max_new_tokens=g.max_new_tokens,
        do_sample=sample,
        temperature=g.temperature if sample else None,
        top_p=g.top_p if sample else None,
        repetition_penalty=g.repetition_penalty,
    )


def push_folder(folder: Path, repo: str, token: str | None, *, private: bool) -> str:
    """Create the repo (private unless asked) and upload the folder; a refusal says what to fix."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="Tuneboard export")
    except HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        why = {
            401: "the token in HF_TOKEN is not valid",
            403: f"the token in HF_TOKEN cannot write to {repo} (it needs write access to that user or org)",
        }.get(code, str(exc).splitlines()[0])
        raise JobError(f"push to {repo} refused: {why}; the export is kept in {folder}") from None
    return str(getattr(commit, "repo_url", "") or f"https://huggingface.co/{repo}")
