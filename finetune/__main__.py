"""Tuneboard's command line: the same YAML the dashboard writes, without the dashboard.

    python -m finetune train CONFIG.yaml [--section.key VALUE ...] [--run-dir DIR] [--resume]
    python -m finetune plan CONFIG.yaml [--section.key VALUE ...]
    python -m finetune render --template NAME [--bos TOKEN] < messages.json
    python -m finetune tokens CONFIG.yaml --text "Hello, <user_name>!"
    python -m finetune presets

Overrides use the config's dotted keys: ``--training.learning_rate 1e-4 --dataset.path data.csv``.
Bad input exits with status 2 and one message per problem, naming the field.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from finetune import config as cfg
from finetune import presets

EXIT_BAD_INPUT = 2


def _fields_epilog() -> str:
    rows = [
        f"  --{path} (default: {default!r})\n      {desc}" for path, desc, default in cfg.describe_fields()
    ]
    return (
        "config keys, settable in the YAML or as overrides:\n"
        + "\n".join(rows)
        + ("\n  --training.<any TrainingArguments / SFTConfig field>\n      unset = the library default")
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m finetune", description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="train a model from a config", epilog=_fields_epilog(), formatter_class=fmt
    )
    train.add_argument("config", type=Path, help="YAML config (e.g. presets/demo.yaml)")
    train.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="run directory (default: $TUNEBOARD_HOME/runs/<time>-<task>-<model>)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in the run directory (default: off)",
    )

    plan = sub.add_parser(
        "plan",
        help="show what a config will do; trains nothing",
        epilog=_fields_epilog(),
        formatter_class=fmt,
    )
    plan.add_argument("config", type=Path, help="YAML config")
    plan.add_argument("--json", action="store_true", help="print the step arithmetic as JSON (default: text)")

    render = sub.add_parser("render", help="render JSON chat messages from stdin with a template")
    render.add_argument(
        "--template", required=True, help=f"template preset id: {', '.join(presets.names('templates'))}"
    )
    render.add_argument("--bos", default="", help="BOS token string the template may emit (default: '')")
    render.add_argument("--eos", default="", help="EOS token string the template may emit (default: '')")
    render.add_argument(
        "--add-generation-prompt",
        action="store_true",
        help="end with the assistant header, as for inference (default: off)",
    )

    tok = sub.add_parser("tokens", help="show how text tokenizes before and after the config's new tokens")
    tok.add_argument("config", type=Path, help="YAML config")
    tok.add_argument("--text", required=True, help="sample text to tokenize")

    sub.add_parser("presets", help="list the presets (templates, model families, hyperparameter sets)")
    sub.add_parser("schema", help="print the config keys as a Markdown table (the README's reference)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    try:
        return COMMANDS[args.command](args, rest)
    except Exception as exc:  # noqa: BLE001 - engine errors become one clear message, not a traceback
        if not isinstance(exc, known_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def known_errors() -> tuple[type, ...]:
    """Errors that mean "bad input, here is why": printed as one line, never as a traceback."""
    from finetune import data, jobs, model, templates, tokens
    from finetune.preflight import PreflightError

    return (cfg.ConfigError, PreflightError, presets.PresetError, data.DataError, model.ModelError,
            templates.TemplateError, tokens.TokenError, jobs.JobError)  # fmt: skip


def _load(args: argparse.Namespace, rest: list[str]) -> cfg.Config:
    return cfg.load(args.config, rest)


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import train

    run_dir = args.run_dir
    if args.resume and run_dir is None:
        run_dir = args.config.resolve().parent  # `train RUN_DIR/config.yaml --resume`
    if run_dir is not None and not os.environ.get("TUNEBOARD_SUPERVISED"):
        _refuse_busy(Path(run_dir))
    return train.main(_load(args, rest), run_dir, resume=args.resume)


def _refuse_busy(run_dir: Path) -> None:
    """Two trainers must never write one run directory: refuse a run that is live or queued."""
    from finetune import jobs
    from finetune import status as st

    state = jobs.reconcile(run_dir).get("state") if (run_dir / "status.json").is_file() else None
    if st.is_active({"state": state}):
        raise jobs.JobError(
            f"run {run_dir.name} is {state}: stop or cancel it first (python -m finetune.jobs stop {run_dir})"
        )


def cmd_plan(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import plan

    rep = plan.report(_load(args, rest))
    print(json.dumps(rep["steps"].as_dict(), indent=1) if args.json else plan.format_report(rep))
    return 0


def cmd_render(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import templates

    if rest:
        raise cfg.ConfigError([("", f"render takes no overrides: {' '.join(rest)}")])
    try:
        messages = json.loads(sys.stdin.read())
    except json.JSONDecodeError as exc:
        raise cfg.ConfigError([("stdin", f"not JSON: {exc}")]) from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise cfg.ConfigError([("stdin", 'expected a JSON list of {"role": ..., "content": ...} objects')])
    text = templates.render(
        templates.load(args.template),
        messages,
        bos_token=args.bos,
        eos_token=args.eos,
        add_generation_prompt=args.add_generation_prompt,
    )
    sys.stdout.write(text)  # exactly the rendered text: no newline added
    sys.stdout.flush()
    return 0


def cmd_tokens(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import model, tokens

    config = _load(args, rest)
    before = model.load_tokenizer(config.model)
    after = model.load_tokenizer(config.model)
    # The family's reserved pad, as in preflight: else a pad-less model shows a <|pad|> training never adds.
    model_type = getattr(model.load_config(config.model), "model_type", None)
    fam = model.family(config.model, model_type) or {}
    changes = tokens.apply(after, config.tokens, fam.get("pad_token"))
    print(f"vocabulary: {len(before):,} -> {len(after):,} ({len(changes.new_ids)} new)")
    for label, pieces in tokens.compare(before, after, args.text).items():
        print(f"{label:>6} ({len(pieces)}): " + " | ".join(pieces))
    return 0


def cmd_presets(args: argparse.Namespace, rest: list[str]) -> int:
    for kind in presets.KINDS:
        print(f"{kind}:")
        for name in presets.names(kind):
            meta = presets.load(kind, name)
            print(f"  {name:<16} {meta.get('description', '')}")
    return 0


def cmd_schema(args: argparse.Namespace, rest: list[str]) -> int:
    print(schema_markdown(), end="")
    return 0


def schema_markdown() -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for path, desc, default in cfg.describe_fields():
        rows.append(f"| `{path}` | `{default!r}` | {desc.replace('|', '/')} |")
    rows.append(
        "| `training.<any TrainingArguments / SFTConfig field>` | library default | passed through as is |"
    )
    return "\n".join(rows) + "\n"


COMMANDS = {
    "schema": cmd_schema,
    "train": cmd_train,
    "plan": cmd_plan,
    "render": cmd_render,
    "tokens": cmd_tokens,
    "presets": cmd_presets,
}

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
