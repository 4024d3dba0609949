"""Does it stop? The tuned model answers held-out prompts greedily; how many answers end with the
end-of-turn token, and how long they are against the data's answers, go to stops.json in the run directory.

    python -m finetune check-stops RUN_DIR [--checkpoint N]      # on demand, any complete checkpoint
    .venv/bin/pytest tests/test_stops.py -q

It runs at the end of every sft/text run (after.stop_check, on by default, within after.stop_check_seconds).
A fine-tuned model that never stops is the most common complaint about fine-tuning tools; its usual causes
are named in the warning: the end-of-turn token left out of the loss, a pad token equal to EOS (its label
masked with the padding), or a base model trained with a chat template it never saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from finetune import inference, preflight, templates
from finetune import status as st

STOPS_FILE = "stops.json"
WARN_BELOW = 0.9  # the share of stopped answers under which the page warns
BATCH = 8  # prompts answered together (one generate() call)


@dataclass(frozen=True)
class Prompt:
    """What the model is asked, and the answer the data gives to it."""

    ask: list[dict[str, str]] | str  # a conversation up to its last reply (sft), or the start of a text
    reference: str


def prompts(checked: preflight.Checked, limit: int) -> tuple[list[Prompt], str]:
    """Up to ``limit`` prompts from the validation split (else the training records), and which it was."""
    held_out = checked.dataset.eval is not None and len(checked.dataset.eval) > 0
    records = checked.dataset.eval if held_out else checked.dataset.first
    found = []
    for record in records.select(range(min(len(records), limit * 2))):
        prompt = _prompt(record)
        if prompt is not None:
            found.append(prompt)
        if len(found) == limit:
            break
    return found, "validation" if held_out else "training"


def _prompt(record: dict[str, Any]) -> Prompt | None:
    if "messages" in record:
        turns = record["messages"]
        last = max((i for i, m in enumerate(turns) if m["role"] == "assistant"), default=None)
        return Prompt(turns[:last], turns[last]["content"]) if last else None
    words = str(record.get("text") or "").split(" ")
    if len(words) < 4:
        return None
    half = len(words) // 2
    return Prompt(" ".join(words[:half]), " ".join(words[half:]))


def check(
    loaded: inference.Loaded,
    asked: list[Prompt],
    source: str,
    *,
    seconds: float,
    should_stop: Callable[[], bool] = lambda: False,
    answered: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Answer ``asked`` greedily until done or out of time; the figures and the answers. ``answered`` hears
    the count after each batch (the page shows it while the run's process checks)."""
    settings = inference.greedy(loaded.config.generation)
    started, answers = time.monotonic(), []
    for start in range(0, len(asked), BATCH):  # the time limit and a Stop are checked between batches
        if time.monotonic() - started > seconds or should_stop():
            break
        chunk = asked[start : start + BATCH]
        for prompt, reply in zip(
            chunk, inference.answers(loaded, [p.ask for p in chunk], settings), strict=True
        ):
            answers.append({"prompt": shown(prompt.ask), "answer": reply.text, "stopped": reply.stopped,
                            "tokens": reply.tokens, "reference": prompt.reference})  # fmt: skip
        answered(len(answers))
    tok = loaded.tokenizer
    stopped = sum(a["stopped"] for a in answers)
    result = {
        "weights": loaded.weights,
        "prompts_from": source,
        "asked": len(asked),
        "answered": len(answers),
        "stopped": stopped,
        "share": stopped / len(answers) if answers else None,
        "max_new_tokens": settings.max_new_tokens,
        "mean_answer_tokens": mean(a["tokens"] for a in answers) if answers else None,
        "data_mean_answer_tokens": mean(len(tok(p.reference)["input_ids"]) for p in asked) if asked else None,
        "end_of_turn": templates.end_of_turn(loaded.template, tok) if loaded.template else tok.eos_token,
        "seconds": round(time.monotonic() - started, 2),
        "answers": answers,
    }
    return result | {"causes": causes(loaded, result)}


def shown(ask: list[dict[str, str]] | str) -> str:
    return (
        ask
        if isinstance(ask, str)
        else next((m["content"] for m in reversed(ask) if m["role"] == "user"), "")
    )


def causes(loaded: inference.Loaded, result: dict[str, Any]) -> list[str]:
    """What usually makes a model run on, checked on this run where it can be (empty when it stops)."""
    if result["share"] is None or result["share"] >= WARN_BELOW:
        return []
    tok, template, found = loaded.tokenizer, loaded.template, []
    if template is not None and loaded.config.template.train_on == "assistant":
        if templates.eot_carries_loss(template, tok) is False:
            found.append(preflight.eot_warning(template, tok))
    if tok.pad_token is not None and tok.pad_token == tok.eos_token:
        found.append(
            f"the pad token is the EOS token {tok.eos_token!r}: padding is masked out of the loss, so the "
            "EOS may be too; use tokens.pad: add (or the family's reserved pad token)"
        )
    if not found:
        found.append(
            "the end-of-turn token was trained, so the model has not learned it well enough yet: a base "
            "model meeting a chat template it never saw needs more steps or more data (or start from an "
            "instruct model)"
        )
    return found


def file_name(weights: str) -> str:
    return STOPS_FILE if weights == inference.FINAL_DIR else f"stops-{weights}.json"


def write(run_dir: Path, result: dict[str, Any]) -> Path:
    """stops.json for final/, stops-checkpoint-N.json for a checkpoint; written whole or not at all."""
    path = Path(run_dir) / file_name(result["weights"])
    st.write_json_atomic(path, result)
    return path


def read(run_dir: Path, weights: str = inference.FINAL_DIR) -> dict[str, Any] | None:
    return st.read_json(Path(run_dir) / file_name(weights))


def summary(result: dict[str, Any]) -> str:
    """One line for the log and the CLI."""
    if not result["answered"]:
        return "stop check: no answer in the time allowed"
    line = (
        f"stop check: {result['stopped']}/{result['answered']} answers ended with {result['end_of_turn']!r} "
        f"within {result['max_new_tokens']} tokens ({100 * result['share']:.0f}%); mean answer "
        f"{result['mean_answer_tokens']:.0f} tokens, the data's {result['data_mean_answer_tokens']:.0f} "
        f"({result['prompts_from']} prompts, {result['seconds']:.0f} s)"
    )
    return line + "".join(f"\nwarning: {cause}" for cause in result["causes"])


def run_check(loaded: inference.Loaded) -> dict[str, Any]:
    """The on-demand check of a loaded run model (final/ or a checkpoint): the run's prompts, checked and
    written beside the run."""
    from finetune import rundir

    checked = preflight.run(loaded.config, pinned=rundir.pinned(loaded.run_dir))
    asked, source = prompts(checked, loaded.config.after.stop_check_prompts)
    result = check(loaded, asked, source, seconds=loaded.config.after.stop_check_seconds)
    write(loaded.run_dir, result)
    return result
