"""finetune/speed.py and finetune/encoding.py: the speed choices a run makes, each with its reason and each
yielding to the config, and the encoded records cached between runs.

    .venv/bin/pytest tests/test_speed.py -q

How much faster they make a run is measured by the benchmark (bench/run.py, bench/RESULTS.md), never here.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import ROOT

from finetune import batching, config, effective, encoding, memory, model, preflight, rundir, speed, train
from finetune.config import dump_yaml

DEMO = ROOT / "presets" / "demo.yaml"


def load(overrides: dict | None = None) -> config.Config:
    return config.load(DEMO, {"training.gradient_checkpointing": None, **(overrides or {})})


def rows(overrides: dict | None = None) -> dict[str, effective.Value]:
    """Every effective value on this machine's CPU."""
    return {row.path: row for row in effective.effective(load(overrides))}


def on_gpu(overrides: dict | None = None, memory_gb: float = 80.0) -> dict[str, effective.Value]:
    """The trainer arguments Tuneboard derives for a bf16 CUDA GPU with ``memory_gb`` (SFTConfig itself
    refuses bf16 on this CPU machine, so they are checked before it sees them)."""
    gpu = {"cuda": True, "bf16_ok": True, "memory_gb": memory_gb}
    kw = effective.training_kwargs(load(overrides), has_eval=False, **gpu)
    return {f"training.{name}": value for name, value in kw.items()}


def test_unset_values_get_the_fast_choice_with_its_reason(tiny_llama: str) -> None:
    got = rows()
    order, checkpointing = got["training.train_sampling_strategy"], got["training.activation_checkpointing"]
    assert order.value == "group_by_length" and order.source.startswith("tuneboard: records of similar")
    assert checkpointing.value is False and "fits the machine's" in checkpointing.source
    assert got["training.gradient_checkpointing"].value is False  # the old name mirrors the new
    free = got["training.padding_free"]
    assert free.value is False and free.source.startswith("library")
    assert got["model.attn_implementation"].value is None  # transformers' own choice (sdpa) on a CPU


def test_the_config_wins_over_every_choice(tiny_llama: str) -> None:
    got = rows({"training.train_sampling_strategy": "random", "training.gradient_checkpointing": True})
    assert got["training.train_sampling_strategy"].value == "random"
    assert got["training.train_sampling_strategy"].source == "user"
    assert got["training.activation_checkpointing"].value is True
    assert got["training.activation_checkpointing"].source.startswith("user")


def test_checkpointing_turns_on_when_the_estimate_does_not_fit(tiny_llama: str) -> None:
    big = {"dataset.max_length": 4096, "training.per_device_train_batch_size": 64}
    checkpointing = on_gpu(big, memory_gb=0.01)["training.activation_checkpointing"]
    assert checkpointing.value is True and "exceeds the GPU's" in checkpointing.source
    assert on_gpu(big)["training.activation_checkpointing"].value is False


@pytest.mark.parametrize(
    "overrides", [{"training.per_device_train_batch_size": 1}, {"training.packing": True}]
)
def test_no_length_grouping_where_batches_are_not_padded(tiny_llama: str, overrides: dict) -> None:
    order = rows(overrides)["training.train_sampling_strategy"]
    assert order.value == "random" and order.source.startswith("library")


def test_flash_attention_brings_padding_free_batches(tiny_llama: str, monkeypatch) -> None:
    """With flash-attn installed on a CUDA GPU in bf16: its kernel, and batches without padding (the kernel
    keeps the records of a row apart). Without it, or on a CPU, or for a classifier: neither."""
    gpu = effective.device_of(True, True, 80.0)
    assert "padding_free" not in on_gpu() and speed.attention(load(), gpu) is None  # no flash-attn here
    monkeypatch.setattr(speed, "installed", lambda package: package == "flash_attn")
    got = on_gpu()
    assert speed.attn_implementation(load(), gpu) == speed.FLASH
    free = got["training.padding_free"]
    assert free.value is True and "variable-length" in free.source
    assert "train_sampling_strategy" not in got  # nothing left to group: the library's random order
    assert rows()["training.padding_free"].value is False  # the CPU
    assert rows()["model.attn_implementation"].value is None
    assert "padding_free" not in on_gpu({"model.attn_implementation": "sdpa"})
    classifier = config.load(DEMO, {"task": "classification", "tokens.add": []})
    assert speed.padding_free(classifier, speed.attn_implementation(classifier, gpu)) is None


def padding_share(cfg: config.Config, tmp_path: Path, batches: int = 12) -> float:
    """The share of token slots that are padding in the first batches the real trainer draws."""
    checked = preflight.run(cfg)
    trainer, _, _ = train.build_trainer(cfg, checked, model.detect_device(), tmp_path)
    slots = real = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i == batches:
            break
        slots += batch["attention_mask"].numel()
        real += int(batch["attention_mask"].sum())
    return 1 - real / slots


def spread_chats(path: Path, records: int = 800) -> Path:
    """Chats whose answers vary in length as real ones do (log-normal, 5 to 400 words)."""
    rng = random.Random(0)
    words = "the a model data learns token from of to in and is answer question short long".split()
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(records):
            answer = " ".join(
                rng.choice(words) for _ in range(min(int(rng.lognormvariate(4.0, 0.8)) + 5, 400))
            )
            chat = [
                {"role": "user", "content": "question " * rng.randint(3, 12)},
                {"role": "assistant", "content": answer},
            ]
            fh.write(json.dumps({"messages": chat}) + "\n")
    return path


def test_length_grouped_batches_carry_less_padding(tiny_llama: str, tmp_path: Path) -> None:
    """Over the first batches the real trainer draws, length grouping leaves a fraction of the padding a
    random order has."""
    data = {"dataset.path": str(spread_chats(tmp_path / "chats.jsonl")), "dataset.max_length": 1024}
    grouped = config.load(DEMO, data)
    shuffled = config.load(DEMO, data | {"training.train_sampling_strategy": "random"})
    less, more = padding_share(grouped, tmp_path / "a"), padding_share(shuffled, tmp_path / "b")
    assert less < more * 0.3, (less, more)


def test_grouped_batches_come_in_random_order_the_longest_first() -> None:
    """transformers' sampler runs each group of batches from the longest records to the shortest; batching.py
    shuffles the batches (every index still drawn once), keeping the one with the longest record first."""
    import torch

    rng = random.Random(1)
    lengths = [int(rng.lognormvariate(4.0, 0.8)) + 5 for _ in range(2000)]
    sampler = batching.ShuffledLengthGroups(8, lengths=lengths, generator=torch.Generator().manual_seed(0))
    order = list(sampler)
    assert sorted(order) == list(range(2000))
    batches = [order[i : i + 8] for i in range(0, 2000, 8)]
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths[0] == max(lengths)
    falls = sum(a >= b for a, b in zip(widths[1:50], widths[2:51], strict=True))
    assert 10 < falls < 40, falls  # a random order, not the library's long-to-short run
    padded = sum(w * len(b) for w, b in zip(widths, batches, strict=True))
    assert sum(lengths) / padded > 0.9  # similar lengths still share a batch


def test_a_resumed_run_keeps_its_first_batch_order(tiny_llama: str, tmp_path: Path) -> None:
    """A run that started before length grouping (effective_config.yaml says random) resumes in that
    order: the Trainer skips the batches it saw, which only works when they are the same."""
    (tmp_path / rundir.EFFECTIVE).write_text(dump_yaml({"training": {"train_sampling_strategy": "random"}}))
    cfg = config.load(DEMO)
    args = effective.training_args(cfg, str(tmp_path), cuda=False, bf16_ok=False, has_eval=False)
    assert args.train_sampling_strategy == "group_by_length"
    train._first_order(args, tmp_path)
    assert args.train_sampling_strategy == "random"


def test_encoded_records_are_cached_by_what_they_depend_on(tiny_llama: str, capsys) -> None:
    cfg = config.load(DEMO)
    checked = preflight.run(cfg)
    first = encoding.tokenized(cfg, checked, checked.dataset.train)
    again = encoding.tokenized(cfg, checked, checked.dataset.train)
    said = capsys.readouterr().err
    assert "read from the cache" in said.splitlines()[-1]
    assert again["input_ids"] == first["input_ids"] and again["assistant_masks"] == first["assistant_masks"]
    here = encoding.cache_file(cfg, checked, checked.dataset.train)
    others = [
        config.load(DEMO, {"template.train_on": "all"}),
        config.load(DEMO, {"tokens.add": []}),
        config.load(DEMO, {"dataset.validation_split": 0.1}),
        config.load(DEMO, {"dataset.max_records": 100}),
    ]
    for other in others:
        ch = preflight.run(other)
        assert encoding.cache_file(other, ch, ch.dataset.train) != here, other.user_dict()


def test_liger_kernels_on_a_cuda_gpu_where_liger_is_installed(tiny_llama: str, monkeypatch) -> None:
    """Liger's layer kernels are chosen on a CUDA GPU with liger-kernel installed, with the reason; the
    config's word wins; on a CPU, or without the package, the model keeps its own layers."""
    gpu, cpu = effective.device_of(True, True, 80.0), effective.device_of(False, False, None)
    assert speed.liger(load(), gpu) is None and not speed.liger_on(load(), gpu)  # not installed here
    assert rows()["model.liger_kernel"].value is None
    monkeypatch.setattr(speed, "installed", lambda package: package == "liger_kernel")
    chosen = speed.liger(load(), gpu)
    assert chosen and chosen.value is True and "CUDA GPU" in chosen.why and speed.liger_on(load(), gpu)
    assert speed.liger(load(), cpu) is None and not speed.liger_on(load(), cpu)
    off = load({"model.liger_kernel": False})
    assert speed.liger(off, gpu) is None and not speed.liger_on(off, gpu)
    # TRL's deprecated switch is refused by name, pointing at the field that replaces it
    with pytest.raises(config.ConfigError, match="use model.liger_kernel"):
        load({"training.use_liger_kernel": True})


def test_liger_where_it_cannot_run_is_refused_before_the_run(tiny_llama: str, tmp_path: Path) -> None:
    from conftest import run_cli

    run_dir = tmp_path / "run"
    result = run_cli("train", str(DEMO), "--model.liger_kernel", "true", "--run-dir", str(run_dir))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.liger_kernel: true needs a CUDA GPU" in result.stderr
    assert not run_dir.exists()


def test_a_cpu_trains_in_passes_of_a_token_budget(tiny_llama: str) -> None:
    """Unset: passes of MICRO_BATCH_TOKENS_CPU tokens on a CPU with the reason, whole batches on a GPU;
    the config's number (0 = whole) wins; the memory estimate counts one pass's records."""
    got = rows()["training.micro_batch_tokens"]
    assert got.value == config.MICRO_BATCH_TOKENS_CPU and got.source.startswith("tuneboard: a CPU")
    gpu, cpu = effective.device_of(True, True, 80.0), effective.device_of(False, False, None)
    assert speed.micro_batches(load(), gpu) is None and speed.micro_batch_tokens(load(), gpu) == 0
    assert "micro_batch_tokens" not in on_gpu()  # Tuneboard's own: never given to SFTConfig
    whole = rows({"training.micro_batch_tokens": 0})["training.micro_batch_tokens"]
    assert (whole.value, whole.source) == (0, "user")
    assert speed.micro_batch_tokens(load({"training.micro_batch_tokens": 0}), cpu) == 0
    wide = load({"dataset.max_length": 512})
    estimate = {
        budget: memory.estimate(wide, cpu, batch_size=8, checkpointing=False, micro_batch_tokens=budget)[
            "activations"
        ]
        for budget in (0, 2048, 100)
    }
    assert estimate[0] == pytest.approx(2 * estimate[2048]) == pytest.approx(8 * estimate[100])


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"launch.num_processes": 2, "launch.strategy": "deepspeed_zero2"}, "DeepSpeed steps the optimizer"),
        ({"task": "classification", "tokens.add": []}, "splits the batches of generative tasks"),
    ],
)
def test_a_token_budget_where_it_cannot_apply_is_refused(overrides: dict, problem: str) -> None:
    with pytest.raises(config.ConfigError, match=problem) as caught:
        config.load(DEMO, overrides | {"training.micro_batch_tokens": 1024})
    assert caught.value.items[0].path == "training.micro_batch_tokens"


def test_split_keeps_every_row_once_within_the_budget() -> None:
    import torch

    lengths = [300, 280, 250, 240, 200, 120, 90, 60]
    mask = torch.tensor([[1] * n + [0] * (300 - n) for n in lengths])
    batch = {"input_ids": mask * 7, "attention_mask": mask, "labels": mask * 7 - 100 * (1 - mask)}
    parts = batching.split(batch, 700)
    assert [p["input_ids"].shape for p in parts] == [(2, 300), (2, 250), (2, 200), (2, 90)]
    assert torch.equal(torch.cat([p["labels"][:, :60] for p in parts]), batch["labels"][:, :60])
    assert sum(int(p["attention_mask"].sum()) for p in parts) == sum(lengths)
    assert batching.split(batch, 2400) == [batch] and len(batching.split(batch, 100)) == 8  # one row each


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_batch_in_passes_makes_the_same_update_as_the_whole_batch(
    tiny_llama: str, tmp_path: Path, method: str
) -> None:
    """The real trainer's first (widest) batch, through training_step whole and with a budget of a few
    hundred tokens: the model sees several narrower passes, and every gradient and the loss are the whole
    batch's."""
    import torch

    data = {"dataset.path": str(spread_chats(tmp_path / "chats.jsonl", 120)), "dataset.max_length": 256}
    data |= {"method": method, "lora.lora_dropout": 0.0}
    seen: dict[int, list[tuple[int, ...]]] = {}
    grads, losses = {}, {}
    for budget in (0, 600):
        cfg = config.load(DEMO, data | {"training.micro_batch_tokens": budget})
        torch.manual_seed(0)  # the same LoRA initialisation both times
        trainer, _, _ = train.build_trainer(
            cfg, preflight.run(cfg), model.detect_device(), tmp_path / f"{budget}"
        )
        batch = next(iter(trainer.get_train_dataloader()))
        shapes = seen[budget] = []
        trainer.model.register_forward_pre_hook(
            lambda _m, _a, kw, shapes=shapes: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
        )
        items = trainer._get_num_items_in_batch([batch], batch["input_ids"].device)
        losses[budget] = float(trainer.training_step(trainer.model, batch, items))
        grads[budget] = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert len(seen[0]) == 1 and len(seen[600]) > 1 and all(r * w <= 600 for r, w in seen[600])
    assert sum(r for r, _ in seen[600]) == seen[0][0][0]
    assert losses[600] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[600].keys() and grads[0]
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[600][name], grad, rtol=1e-4, atol=1e-6, msg=name)
