"""On a GPU: plain TRL (a) against Tuneboard's CLI (b) on real architectures' shapes, LoRA and full, with MFU.

    (run by bench/run.py when torch.cuda.is_available(), after the main table; not with --quick)

The shapes are Llama-3.2-1B's and Qwen2.5-0.5B's config.json values, written below (no download), with
random bf16 weights built on the GPU and builtin:tiny-llama's tokenizer; the embedding keeps the real
vocabulary size, so the output head costs what it costs in the real model. Each (shape, method) runs (a) then
(b) once on the main section's chat set: 30 steps, batch 8, max_length 1024, lr 1e-4.

MFU = tokens/s x FLOPs per token / the GPU's dense bf16 peak (H100 and H200: 989 TFLOP/s). FLOPs per token:
6N for full fine-tuning, 4N for LoRA (the frozen weights get no weight gradients; the adapters' own FLOPs
are under 1%), plus 12 L d_attn T for attention (PaLM, appendix B), with N the weights of every matmul (the
output head included, the embedding lookup not) and T the data's mean attended length per token (sum of
L^2 over sum of L, records cut at max_length). Recomputed activations are not counted (MFU, not HFU). No
run starts once 7 minutes have passed, so the GPU runs end within about 8.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import measure
import workload

SHAPES = [
    workload.Shape(
        "llama-3.2-1b-shape",
        "llama",
        {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 64,
            "vocab_size": 128256,
            "tie_word_embeddings": True,
            "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5,
            "max_position_embeddings": 4096,
        },
    ),
    workload.Shape(
        "qwen2.5-0.5b-shape",
        "qwen2",
        {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "tie_word_embeddings": True,
            "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096,
        },
    ),
]
METHODS = ("lora", "full")
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}  # dense bf16
BUDGET_S = 420.0
HPARAMS = {"batch_size": 8, "learning_rate": 1e-4, "steps": 30, "max_length": 1024, "logging_steps": 5}


def matmul_params(cfg: dict[str, Any]) -> int:
    """Weights of every matmul of a Llama/Qwen2-shaped decoder: attention, MLP and the output head."""
    d, layers, heads = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or d // heads
    q, kv = heads * head_dim, cfg["num_key_value_heads"] * head_dim
    per_layer = d * q + 2 * d * kv + q * d + 3 * d * cfg["intermediate_size"]
    return layers * per_layer + d * cfg["vocab_size"]


def flops_per_token(cfg: dict[str, Any], method: str, attended: float) -> float:
    heads = cfg["num_attention_heads"]
    d_attn = heads * (cfg.get("head_dim") or cfg["hidden_size"] // heads)
    weights = (6 if method == "full" else 4) * matmul_params(cfg)
    return weights + 12 * cfg["num_hidden_layers"] * d_attn * attended


def attended_length(setup: Any, max_length: int) -> float:
    """Sum of L^2 over sum of L for the records as the template renders them, cut at ``max_length``."""
    tok = workload.tokenizer()
    lengths = []
    for line in setup.data.read_text(encoding="utf-8").splitlines():
        ids = tok.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=True)
        lengths.append(min(len(ids["input_ids"]), max_length))
    return sum(n * n for n in lengths) / sum(lengths)


def peak_flops(device: str) -> float | None:
    found = [tflops for name, tflops in PEAK_TFLOPS.items() if name in device]
    return found[0] * 1e12 if found else None


def run_all(setup: Any, quick: bool, runners: dict[str, Callable[[Any, Any], dict[str, Any]]]) -> list[dict]:
    """Every (shape, method) with (a) then (b); returns one row per run, with MFU."""
    if quick:
        print("gpu: real shapes skipped in --quick mode", flush=True)
        return []
    import torch

    from finetune import builtin

    device, started, rows = torch.cuda.get_device_name(0), time.monotonic(), []
    attended = attended_length(setup, HPARAMS["max_length"])
    for shape in SHAPES:
        folder = builtin.cache_root() / "bench" / f"{shape.name}-bf16-v1"
        model = workload.build_model(shape, folder, dtype="bfloat16", device="cuda")
        torch.cuda.empty_cache()  # the weights just saved: leave the GPU to the runs
        cfg = json.loads((model / "config.json").read_text())
        for method in METHODS:
            hp = workload.Hparams(**HPARAMS, method=method)
            config = workload.tuneboard_config(model, setup.data, hp)
            case = dataclasses.replace(setup, model=model, hp=hp, config=config)
            for v in ("a", "b"):
                if time.monotonic() - started > BUDGET_S:
                    print(
                        f"gpu: {shape.name} {method} ({v}) not started: the GPU budget is spent", flush=True
                    )
                    continue
                got = runners[v](case, setup.work / f"gpu-{shape.name}-{method}-{v}")
                got |= {"shape": shape.name, "method": method, "variant": v}
                got["mfu"] = measure.ratio(
                    got["tokens_per_s"] * flops_per_token(cfg, method, attended), peak_flops(device)
                )
                rows.append({k: x for k, x in got.items() if k != "losses"})
                mfu = "-" if got["mfu"] is None else f"{got['mfu']:.1%}"
                print(
                    f"gpu: {shape.name} {method} ({v}): {got['tokens_per_s']:,.0f} tokens/s, MFU {mfu}",
                    flush=True,
                )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    widths = (22, 7, 5, 10, 8, 9, 9, 9, 7, 8)
    head = ["GPU shape", "method", "var", "tokens/s", "s/step", "padding"]
    head += ["peak GB", "est. GB", "MFU", "vs (a)"]
    fit = lambda cells: "".join(  # noqa: E731
        c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )
    print("\n" + fit(head))
    plain = {(r["shape"], r["method"]): r for r in rows if r["variant"] == "a"}
    for r in rows:
        base = plain.get((r["shape"], r["method"]))
        vs = measure.ratio(r["tokens_per_s"], base["tokens_per_s"]) if base else None
        cells = [r["shape"], r["method"], r["variant"], f"{r['tokens_per_s']:,.0f}", f"{r['s_per_step']:.3f}"]
        said = (r.get("memory_estimate") or {}).get("estimate_gb")  # the engine's, for (b): bench/run.py
        cells += [f"{r['padding']:.1%}", f"{r['peak_mb'] / 1024:.1f}", "-" if said is None else f"{said:.1f}"]
        cells += ["-" if r["mfu"] is None else f"{r['mfu']:.1%}", "-" if vs is None else f"{vs:.2f}x"]
        print(fit(cells))
