"""A run's model, loaded to answer: the tuned weights (final/ or a complete checkpoint) or the base model,
with the run's own template, system prompt and tokens. Used by `chat`, the stop check and the page's
inference worker (finetune/worker.py); never in the dashboard's own process.

    python -m finetune chat RUN_DIR [--checkpoint N] [--base] [--prompt TEXT]
    .venv/bin/pytest tests/test_inference.py -q

An answer is the template's generation prompt continued until one of its stop strings (the end-of-turn
token first) or generation.max_new_tokens. A `text` run is continued as plain text, with no template.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune import config as cfg
from finetune import model, resume, rundir, templates
from finetune import status as st
from finetune.errors import JobError, ModelError

FINAL_DIR = "final"


@dataclass
class Loaded:
    """A model ready to answer, and what it needs to read prompts the way it was trained."""

    run_dir: Path
    config: cfg.Config
    net: Any
    tokenizer: Any
    template: templates.Template | None
    weights: str  # "final", "checkpoint-40", or "base"
    device: str
    stop_ids: list[int] = field(default_factory=list)


@dataclass
class Reply:
    """One answer: its text, how it ended and how long it took."""

    text: str
    tokens: int
    stopped: bool  # ended with a stop token, not at max_new_tokens
    seconds: float
    first_token_seconds: float | None


def weights_dir(run_dir: Path, checkpoint: int | None = None) -> Path:
    """final/, or checkpoint-N (the newest complete one when no final/ exists); refused when there is none."""
    run_dir = Path(run_dir)
    if checkpoint is not None:
        folder = run_dir / f"checkpoint-{checkpoint}"
        if not (folder / "trainer_state.json").is_file():
            have = ", ".join(p.name for p in complete_checkpoints(run_dir)) or "none"
            raise JobError(f"run {run_dir.name} has no complete checkpoint-{checkpoint} (complete: {have})")
        return folder
    if (run_dir / FINAL_DIR / "config.json").is_file():
        return run_dir / FINAL_DIR
    newest = resume.last_checkpoint(run_dir)
    if newest is None:
        raise JobError(
            f"run {run_dir.name} has neither final/ nor a complete checkpoint yet: nothing to answer with; "
            "wait for its first checkpoint (training.save_steps) or for it to finish"
        )
    return newest


def weights_step(run_dir: Path, weights: str) -> int | None:
    """The optimizer step the weights were saved at (checkpoint-N: N; final/: its trainer_state.json)."""
    if weights.startswith("checkpoint-"):
        return resume.checkpoint_step(Path(run_dir) / weights)
    state = st.read_json(Path(run_dir) / weights / "trainer_state.json")
    return int(state["global_step"]) if state and "global_step" in state else None


def available(run_dir: Path) -> list[str]:
    """The weights a run can answer with, as the page lists them: final (when saved), then checkpoint-N."""
    final = [FINAL_DIR] if (Path(run_dir) / FINAL_DIR / "config.json").is_file() else []
    return final + [p.name for p in complete_checkpoints(run_dir)]


def complete_checkpoints(run_dir: Path) -> list[Path]:
    found = [p for p in Path(run_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return sorted(found, key=resume.checkpoint_step)


def load(
    run_dir: Path, *, checkpoint: int | None = None, base: bool = False, device: str | None = None
) -> Loaded:
    """The tuned model of ``run_dir`` (or, with ``base``, the model it started from) on ``device``
    (default: the GPU when there is one)."""
    run_dir = Path(run_dir)
    config = cfg.load(run_dir / rundir.CONFIG)
    pinned = rundir.pinned(run_dir)
    found = model.detect_device()
    where = device or ("cuda" if found.kind == "cuda" else "cpu")
    if base and config.task == "classification":
        raise JobError("a classification run's base model has an untrained classification head: compare runs")
    if base:
        tokenizer = model.load_tokenizer(config.model)
        net, label = model.load_model(config, found), "base"
    else:
        folder = weights_dir(run_dir, checkpoint)
        tokenizer = run_tokenizer(folder)
        net, label = tuned_model(config, found, folder, tokenizer), folder.name
    if config.method != "qlora":  # a 4-bit model is placed on its GPU when it loads
        net.to(where)
    net.eval()
    template = pinned.template if pinned and config.task == "sft" else None
    loaded = Loaded(run_dir, config, net, tokenizer, template, label, where)
    loaded.stop_ids = stop_ids(loaded)
    return loaded


def from_model(run_dir: Path, config: cfg.Config, net: Any, tokenizer: Any, template: Any) -> Loaded:
    """A model already in memory (the trainer's, right after training) as :class:`Loaded`."""
    net.eval()
    device = str(next(net.parameters()).device)
    loaded = Loaded(
        run_dir, config, net, tokenizer, template if config.task == "sft" else None, FINAL_DIR, device
    )
    loaded.stop_ids = stop_ids(loaded)
    return loaded


def run_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))  # the run's: its added tokens and pad


def tuned_model(config: cfg.Config, device: model.Device, folder: Path, tokenizer: Any) -> Any:
    """An adapter on its base (embeddings resized to the run's tokenizer first), or the full weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    labels = AutoConfig.from_pretrained(str(folder)).num_labels if config.task == "classification" else None
    if not (folder / "adapter_config.json").is_file():
        auto = AutoModelForSequenceClassification if labels else AutoModelForCausalLM
        return auto.from_pretrained(str(folder), dtype=model.torch_dtype(config.model, device))
    from peft import PeftModel

    net = model.load_model(config, device, num_labels=labels)
    rows = net.get_input_embeddings().weight.shape[0]
    if rows != len(tokenizer):
        net.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # the adapter holds the trained rows
    try:
        return PeftModel.from_pretrained(net, str(folder))
    except (RuntimeError, ValueError) as exc:  # a base that changed since the run: say which, not a traceback
        raise ModelError(
            "model.name_or_path",
            f"the adapter in {folder} does not fit the base model {config.model.name_or_path!r} any more "
            f"({str(exc).splitlines()[0][:200]}); point model.name_or_path at the model the run trained from",
        ) from None


def stop_ids(loaded: Loaded) -> list[int]:
    """Token ids that end an answer: each stop string that is one token of this tokenizer."""
    tok = loaded.tokenizer
    strings = templates.stop_strings(loaded.template, tok) if loaded.template else [tok.eos_token]
    ids = [tok.convert_tokens_to_ids(s) for s in strings if s and s in tok.get_vocab()]
    return list(dict.fromkeys(i for i in ids if i is not None and i != tok.unk_token_id))


def prompt_ids(loaded: Loaded, messages: list[dict[str, str]] | str) -> list[int]:
    """What the model reads before its answer: the conversation through the run's template with the
    generation prompt (the run's system prompt first, when it has one), or plain text for a `text` run."""
    tok = loaded.tokenizer
    if loaded.template is None:
        text = messages if isinstance(messages, str) else messages[-1]["content"]
        return tok(text)["input_ids"]  # the tokenizer's own BOS, as a text run trains
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    system = loaded.config.template.system_prompt
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    (encoded,) = templates.encode(
        tok, loaded.template, [messages], assistant_only=False, add_generation_prompt=True
    )
    return encoded.ids


def stream(
    loaded: Loaded, messages: list[dict[str, str]] | str, settings: cfg.GenerationConfig | None = None
) -> Iterator[str | Reply]:
    """The answer as it is written, piece by piece; the last item is its :class:`Reply`."""
    import torch
    from transformers import TextIteratorStreamer

    settings = settings or loaded.config.generation
    ids = torch.tensor([prompt_ids(loaded, messages)], device=loaded.device)
    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: dict[str, Any] = {}
    kwargs = _generate_kwargs(loaded, settings) | {"input_ids": ids, "streamer": streamer}
    worker = threading.Thread(target=lambda: out.update(seq=loaded.net.generate(**kwargs)), daemon=True)
    started, first, pieces = time.perf_counter(), None, []
    worker.start()
    for piece in streamer:
        first = first if first is not None else time.perf_counter() - started
        pieces.append(piece)
        yield piece
    worker.join()
    new = out["seq"][0, ids.shape[1] :].tolist()
    stopped = bool(new) and new[-1] in loaded.stop_ids
    yield Reply("".join(pieces), len(new), stopped, time.perf_counter() - started, first)


def answer(
    loaded: Loaded, messages: list[dict[str, str]] | str, settings: cfg.GenerationConfig | None = None
) -> Reply:
    *_, reply = stream(loaded, messages, settings)
    return reply


def answers(
    loaded: Loaded, asks: list[list[dict[str, str]] | str], settings: cfg.GenerationConfig
) -> list[Reply]:
    """Several answers in one batched generate() (left-padded), each cut at its first stop token: what the
    stop check uses, many times faster than one prompt at a time."""
    import torch

    started = time.perf_counter()
    rows = [prompt_ids(loaded, ask) for ask in asks]
    pad = _generate_kwargs(loaded, settings)["pad_token_id"]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=loaded.device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=loaded.device)
    with torch.no_grad():
        out = loaded.net.generate(input_ids=ids, attention_mask=mask, **_generate_kwargs(loaded, settings))
    seconds = time.perf_counter() - started
    replies = []
    for row in out[:, width:].tolist():
        end = next((i for i, t in enumerate(row) if t in loaded.stop_ids), None)
        kept = row[: end + 1] if end is not None else row
        text = loaded.tokenizer.decode(kept, skip_special_tokens=True)
        replies.append(Reply(text, len(kept), end is not None, seconds, None))
    return replies


def _generate_kwargs(loaded: Loaded, settings: cfg.GenerationConfig) -> dict[str, Any]:
    tok = loaded.tokenizer
    sample = settings.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sample,
        "repetition_penalty": settings.repetition_penalty,
        "eos_token_id": loaded.stop_ids or None,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else (loaded.stop_ids or [0])[0],
    }
    if sample:
        kwargs |= {"temperature": settings.temperature, "top_p": settings.top_p}
    else:
        kwargs |= {"temperature": None, "top_p": None, "top_k": None}  # no sampling warnings on greedy
    return kwargs


def classify(loaded: Loaded, text: str) -> list[tuple[str, float]]:
    """A classification run's labels for ``text``, most likely first, with their probabilities."""
    import torch

    batch = loaded.tokenizer(
        text, truncation=True, max_length=loaded.config.dataset.max_length, return_tensors="pt"
    )
    with torch.no_grad():
        logits = loaded.net(**batch.to(loaded.device)).logits[0]
    probs = torch.softmax(logits.float(), dim=-1).tolist()
    names = loaded.net.config.id2label
    ranked = sorted(((names.get(i, str(i)), p) for i, p in enumerate(probs)), key=lambda x: -x[1])
    return [(str(name), float(p)) for name, p in ranked]


def greedy(settings: cfg.GenerationConfig) -> cfg.GenerationConfig:
    """The same limits, always the most likely token: reproducible answers for checks and comparisons."""
    return settings.model_copy(update={"temperature": 0.0})
