"""Did it learn? A run's model measured on held-out records, next to the model it started from:
eval.json in the run directory (eval-checkpoint-N.json for a checkpoint), the same figures in TensorBoard.

    python -m finetune eval RUN_DIR [--checkpoint N] [--no-base] [--samples K] [--json]
    .venv/bin/pytest tests/test_evaluate.py -q

- sft / text: the loss and perplexity over the validation records, computed by the run's own trainer class
  (TRL's SFTTrainer, so the tokens that carry loss are exactly those training counted), for the tuned model
  and for the base as training began (its new token rows initialised the same way); and a few records with
  the base's and the tuned model's greedy answers beside the reference.
- classification: accuracy, macro-F1, per-class precision / recall and the confusion matrix (scikit-learn),
  drawn as eval-confusion.png; predicted beside true labels for a few records. The base has an untrained
  classification head, so it is not measured.

Without a validation split the figures come from records the model trained on: every result says so
(``records_from: training``), with the fix for the next run (dataset.validation_split).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from finetune import effective, inference, model, preflight, rundir, stops, tokens
from finetune import status as st
from finetune.config import Config

EVAL_FILE = "eval.json"
CONFUSION_PNG = "eval-confusion.png"
SAMPLES = 3  # records shown with their answers
TRAINING_NOTE = (
    "this run has no validation split, so these figures come from records the model trained on and "
    "flatter it; set dataset.validation_split (0.1 keeps a tenth of the records aside) for the next run"
)


def run(run_dir: Path, *, checkpoint: int | None = None, base: bool = True, samples: int = SAMPLES) -> dict:
    """Evaluate a run's final/ (or checkpoint-N), write eval.json and TensorBoard scalars; the result."""
    tuned = inference.load(Path(run_dir), checkpoint=checkpoint)
    checked = preflight.run(tuned.config, pinned=rundir.pinned(tuned.run_dir))
    held_out = checked.dataset.eval is not None and len(checked.dataset.eval) > 0
    records = checked.dataset.eval if held_out else checked.dataset.first
    result: dict[str, Any] = {
        "weights": tuned.weights,
        "step": inference.weights_step(tuned.run_dir, tuned.weights),
        "task": tuned.config.task,
        "records_from": "validation" if held_out else "training",
        "records": len(records),
        "note": None if held_out else TRAINING_NOTE,
    }
    if tuned.config.task == "classification":
        result |= classification(tuned, checked, records, samples)
    else:
        result |= language_model(tuned, checked, records, samples, base=base)
    write(tuned.run_dir, result)
    to_tensorboard(tuned.run_dir, result)
    return result


def language_model(
    tuned: inference.Loaded, checked: preflight.Checked, records: Any, samples: int, *, base: bool
) -> dict[str, Any]:
    """Loss and perplexity of the tuned model (and the base), and a few answers beside their reference."""
    out: dict[str, Any] = {"tuned": lm_loss(tuned.config, checked, tuned.net, records)}
    asked = stops.prompts(checked, samples)[0] if samples else []
    rows = [{"prompt": stops.shown(p.ask), "reference": p.reference} for p in asked]
    _answer(tuned, asked, rows, "tuned")
    if base:
        starting = starting_model(tuned.config, checked, tuned.device)
        out["base"] = lm_loss(tuned.config, checked, starting.net, records)
        _answer(starting, asked, rows, "base")
    return out | {"samples": rows}


def _answer(loaded: inference.Loaded, asked: list[stops.Prompt], rows: list[dict], key: str) -> None:
    if asked:
        settings = inference.greedy(loaded.config.generation)
        replies = inference.answers(loaded, [p.ask for p in asked], settings)
        for row, reply in zip(rows, replies, strict=True):
            row[key] = reply.text


def starting_model(config: Config, checked: preflight.Checked, device: str) -> inference.Loaded:
    """The base model as training began: the run's tokenizer, new token rows initialised as training did."""
    net = model.load_model(config, model.detect_device())
    tokens.resize_and_init(net, checked.tokenizer, checked.token_changes, config.tokens.init)
    net.to(device)
    loaded = inference.from_model(Path("."), config, net, checked.tokenizer, checked.template)
    loaded.weights = "base"
    return loaded


def lm_loss(config: Config, checked: preflight.Checked, net: Any, records: Any) -> dict[str, float]:
    """Mean loss per trained token over ``records`` (the run's SFTTrainer counts them), and perplexity."""
    from datasets.utils.logging import disable_progress_bar
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from finetune import encoding

    disable_progress_bar()  # TRL's label building for a few records; the CLI prints one summary
    data = encoding.tokenized(config, checked, records) if config.task == "sft" else records
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=net,
            args=eval_args(config, out),
            train_dataset=data,
            eval_dataset=data,
            processing_class=checked.tokenizer,
        )
        trainer.remove_callback(PrinterCallback)  # the figures go to eval.json, not printed as a dict
        metrics = trainer.evaluate()
    loss = float(metrics["eval_loss"])
    figures = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if "eval_mean_token_accuracy" in metrics:
        figures["token_accuracy"] = float(metrics["eval_mean_token_accuracy"])
    return figures


def eval_args(config: Config, out: str) -> Any:
    """The run's trainer arguments for an evaluation pass: nothing reported, logged or saved."""
    device = model.detect_device()
    values = {
        name: v.value
        for name, v in effective.training_kwargs(
            config, cuda=device.kind == "cuda", bf16_ok=device.bf16, has_eval=True, memory_gb=device.memory_gb
        ).items()
    }
    values |= {"report_to": "none", "eval_strategy": "no", "save_strategy": "no", "logging_strategy": "no"}
    values |= {"disable_tqdm": True}
    # transformers also orders evaluation batches by length under group_by_length; predictions must stay in
    # the records' order to be compared with their labels
    values["train_sampling_strategy"] = "sequential"
    values.pop("load_best_model_at_end", None)
    return effective.args_class(config)(output_dir=out, **values)


def classification(
    tuned: inference.Loaded, checked: preflight.Checked, records: Any, samples: int
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix, from scikit-learn."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    names = checked.dataset.label_names or []
    predicted, confidence = predict(tuned, checked, records)
    true = list(records["label"])
    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=ids, zero_division=0
    )
    per_class = [
        {"label": n, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for n, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    ]
    shown = [
        {
            "text": t if len(t) <= 300 else t[:300] + "…",
            "true": names[y],
            "predicted": names[p],
            "probability": c,
        }
        for t, y, p, c in zip(
            records["text"][:samples], true[:samples], predicted[:samples], confidence[:samples], strict=True
        )
    ]
    return {
        "labels": names,
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(f1_score(true, predicted, labels=ids, average="macro", zero_division=0)),
        "per_class": per_class,
        "confusion": confusion_matrix(true, predicted, labels=ids).tolist(),  # rows: true, columns: predicted
        "samples": shown,
    }


def predict(
    tuned: inference.Loaded, checked: preflight.Checked, records: Any
) -> tuple[list[int], list[float]]:
    """The most likely class of every record and its probability, batched and padded as training fed them."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer

    tok, max_length = checked.tokenizer, tuned.config.dataset.max_length
    encode = lambda b: tok(b["text"], truncation=True, max_length=max_length)  # noqa: E731 - as training
    data = records.map(encode, batched=True, remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=tuned.net,
            args=eval_args(tuned.config, out),
            eval_dataset=data,
            processing_class=tok,
            data_collator=DataCollatorWithPadding(tok),
        )
        logits = trainer.predict(data).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    best = torch.softmax(torch.as_tensor(logits).float(), dim=-1).max(dim=-1)
    return best.indices.tolist(), best.values.tolist()


def file_name(weights: str) -> str:
    return EVAL_FILE if weights == inference.FINAL_DIR else f"eval-{weights}.json"


def write(run_dir: Path, result: dict[str, Any]) -> Path:
    """eval.json (whole or not at all) and, for classification, the confusion matrix as a picture."""
    path = Path(run_dir) / file_name(result["weights"])
    st.write_json_atomic(path, result)
    if result["task"] == "classification" and result["weights"] == inference.FINAL_DIR:
        from finetune import figures

        figures.confusion_png(result["labels"], result["confusion"], Path(run_dir) / CONFUSION_PNG)
    return path


def read(run_dir: Path, weights: str = inference.FINAL_DIR) -> dict[str, Any] | None:
    return st.read_json(Path(run_dir) / file_name(weights))


def headline(result: dict[str, Any]) -> dict[str, float]:
    """The figures worth comparing across runs, by name (what TensorBoard and the Runs table show)."""
    if result["task"] == "classification":
        return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
    out = {f"{name}_tuned": v for name, v in result["tuned"].items() if name in ("loss", "perplexity")}
    if "base" in result:
        out |= {f"{name}_base": v for name, v in result["base"].items() if name in ("loss", "perplexity")}
    return out


def to_tensorboard(run_dir: Path, result: dict[str, Any]) -> None:
    """The headline figures under eval/ in the run's TensorBoard folder, at the weights' step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(Path(run_dir) / "tensorboard" / "eval"))
    try:
        for name, value in headline(result).items():
            writer.add_scalar(f"eval/{name}", value, global_step=result["step"] or 0)
    finally:
        writer.close()


def summary(result: dict[str, Any]) -> str:
    """A few lines for the CLI and the log."""
    where = f"{result['records']} {result['records_from']} records"
    if result["task"] == "classification":
        line = f"eval ({where}): accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}"
    else:
        tuned = result["tuned"]
        line = f"eval ({where}): loss {tuned['loss']:.3f}, perplexity {tuned['perplexity']:.2f}"
        if "base" in result:
            base = result["base"]
            line += f" (base: loss {base['loss']:.3f}, perplexity {base['perplexity']:.2f})"
    return line + (f"\nnote: {result['note']}" if result["note"] else "")
