"""Tuneboard's command line: every verb, on the same YAML the dashboard writes.

    python -m finetune train CONFIG.yaml [--section.key VALUE ...] [--run-dir DIR] [--resume]
    python -m finetune plan CONFIG.yaml [--section.key VALUE ...] [--json] [--explain [--lang ja]]
    python -m finetune render --template NAME [--bos TOKEN] < messages.json
    python -m finetune tokens CONFIG.yaml --text "Hello, <user_name>!"
    python -m finetune presets | schema | builtin [NAME]
    python -m finetune start CONFIG.yaml [--home DIR]      # queue a background job (as Start in the page)
    python -m finetune stop | cancel | resume | check RUN_DIR
    python -m finetune queue | supervise | runs [--home DIR]
    python -m finetune chat RUN_DIR [--checkpoint N] [--base] [--prompt TEXT] [--generation.key VALUE ...]
    python -m finetune check-stops RUN_DIR [--checkpoint N] [--json]
    python -m finetune worker                # the page's inference worker (finetune/worker.py)

Overrides use the config's dotted keys: ``--training.learning_rate 1e-4 --dataset.path data.csv``.
Bad input (any finetune.errors.TuneboardError) exits with status 2 and one message per problem, naming the
field.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from finetune import (
    builtin,
    duration,
    explain,
    jobs,
    model,
    paths,
    plan,
    preflight,
    presets,
    runs,
    scheduler,
    templates,
    tokens,
)
from finetune import config as cfg
from finetune import status as st
from finetune.errors import ConfigError, JobError, TuneboardError

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
    _config_parsers(sub, fmt)
    _tool_parsers(sub)
    _job_parsers(sub)
    _after_parsers(sub)
    return parser


def _config_parsers(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """train and plan: a config with --section.key overrides; their --help lists every config field."""
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
    plan.add_argument(
        "--explain", action="store_true", help="then explain every field in plain words (default: off)"
    )
    plan.add_argument(
        "--lang", choices=explain.LANGS, default="en", help="language of --explain (default: en)"
    )

    calibrate = sub.add_parser(
        "calibrate",
        help="measure this machine's speed on a config: a few real steps, kept for the duration estimate",
        epilog=_fields_epilog(),
        formatter_class=fmt,
    )
    calibrate.add_argument("config", type=Path, help="YAML config")
    calibrate.add_argument(
        "--steps", type=int, default=duration.CALIBRATION_STEPS, help="training steps to time (default: 10)"
    )


def _tool_parsers(sub: argparse._SubParsersAction) -> None:
    """The verbs that look at templates, tokens, presets, the schema and the tiny local models."""
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
    built = sub.add_parser("builtin", help="build a tiny local model (cached) and print its folder")
    built.add_argument("name", nargs="?", default="tiny-llama", help="tiny-llama or tiny-gemma")


def _job_parsers(sub: argparse._SubParsersAction) -> None:
    """The background-job verbs (finetune/jobs.py, finetune/scheduler.py)."""
    home = {"type": Path, "default": paths.home(), "help": "data directory (default: $TUNEBOARD_HOME)"}
    start = sub.add_parser("start", help="validate a config and queue it (starts at once if a slot is free)")
    start.add_argument("config", type=Path)
    start.add_argument("--home", **home)
    for name, text in [
        ("stop", "stop a run with a checkpoint (a queued run is cancelled)"),
        ("cancel", "take a queued run out of the queue"),
        ("resume", "queue a stopped or failed run again, from its last complete checkpoint"),
        ("check", "reconcile a run's status with its process and print it"),
    ]:
        sub.add_parser(name, help=text).add_argument("run_dir", type=Path)
    for name, text in [
        ("queue", "list the queued runs, first to start first"),
        ("supervise", "reconcile runs and start queued ones until Ctrl-C (what the dashboard does)"),
        ("runs", "one line per run: id, state, start, duration, final loss"),
    ]:
        sub.add_parser(name, help=text).add_argument("--home", **home)


def _after_parsers(sub: argparse._SubParsersAction) -> None:
    """What to do with a trained run (finetune/inference.py, finetune/stops.py)."""
    chat = sub.add_parser("chat", help="talk to a run's model (streamed; each line of stdin is a turn)")
    check = sub.add_parser("check-stops", help="does the tuned model end its answers? writes stops.json")
    ev = sub.add_parser("eval", help="measure the tuned model (and its base) on held-out records: eval.json")
    out = sub.add_parser("export", help="the adapter, or merged weights, ready to load or push to the Hub")
    for verb in (chat, check, ev, out):
        verb.add_argument("run_dir", type=Path)
        verb.add_argument("--checkpoint", type=int, help="a complete checkpoint-N instead of final/")
    chat.add_argument("--base", action="store_true", help="the base model, with the run's template")
    chat.add_argument("--prompt", help="one message, answered, then exit (else read turns from stdin)")
    check.add_argument("--json", action="store_true", help="print stops.json")
    ev.add_argument("--no-base", dest="base", action="store_false", help="skip the base model")
    ev.add_argument("--samples", type=int, default=3, help="records shown with their answers (default 3)")
    ev.add_argument("--json", action="store_true", help="print eval.json")
    out.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base weights")
    out.add_argument("--output", type=Path, help="where to write (default RUN_DIR/export[-merged])")
    out.add_argument("--force", action="store_true", help="replace an --output folder that is not empty")
    out.add_argument("--push", metavar="ORG/NAME", help="upload to this Hub repo (token: HF_TOKEN)")
    out.add_argument("--public", dest="private", action="store_false", help="a public repo (default private)")
    sub.add_parser(
        "worker", help="the inference worker the page starts (JSON requests on stdin, a line each)"
    )
    sub.add_parser("analyst", help="the analysis process the page starts (its previews; finetune/analyst.py)")


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    if rest and args.command not in TAKES_OVERRIDES:
        build_parser().error(f"{args.command} takes no --section.key overrides: {' '.join(rest)}")
    try:
        return COMMANDS[args.command](args, rest)
    except TuneboardError as exc:  # bad input: one clear message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


TAKES_OVERRIDES = ("train", "plan", "calibrate", "tokens", "chat")


def _load(args: argparse.Namespace, rest: list[str]) -> cfg.Config:
    return cfg.load(args.config, rest)


def cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import train  # torch and the trainers: only this verb needs them

    run_dir = args.run_dir
    if args.resume and run_dir is None:
        run_dir = args.config.resolve().parent  # `train RUN_DIR/config.yaml --resume`
    if run_dir is not None and not os.environ.get("TUNEBOARD_SUPERVISED"):
        _refuse_busy(Path(run_dir))
    return train.main(_load(args, rest), run_dir, resume=args.resume)


def _refuse_busy(run_dir: Path) -> None:
    """Two trainers must never write one run directory: refuse a run that is live or queued."""
    state = jobs.reconcile(run_dir).get("state") if (run_dir / "status.json").is_file() else None
    if st.is_active({"state": state}):
        fix = f"stop or cancel it first (python -m finetune stop {run_dir})"
        raise JobError(f"run {run_dir.name} is {state}: {fix}")


def cmd_plan(args: argparse.Namespace, rest: list[str]) -> int:
    config = _load(args, rest)
    checked = preflight.run(config, sample=plan.SAMPLE)
    lengths = None if args.json else plan.lengths(checked)  # every record's, where that is cheap
    rep = plan.report(config, checked, lengths)
    print(json.dumps(rep["steps"].as_dict(), indent=1) if args.json else plan.format_report(rep))
    if args.explain:
        print("\n" + "\n\n".join(explain.paragraphs(config, args.lang)))
    return 0


def cmd_calibrate(args: argparse.Namespace, rest: list[str]) -> int:
    config = _load(args, rest)
    print(f"calibrating: {args.steps} training steps on the config's data (not kept as a run)", flush=True)
    said = duration.calibrate(config, args.steps)
    print(said or "the calibration measured no speed (too few logged steps)")
    print(plan.duration_line(plan.report(config)["duration"]).strip())
    return 0


def cmd_render(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        messages = json.loads(sys.stdin.read())
    except json.JSONDecodeError as exc:
        raise ConfigError([("stdin", f"not JSON: {exc}")]) from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ConfigError([("stdin", 'expected a JSON list of {"role": ..., "content": ...} objects')])
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
    rows = ["| key | default | meaning | in plain words |", "| --- | --- | --- | --- |"]
    for path, desc, default in cfg.describe_fields():
        plain = explain.entry(path).get("what", "")
        rows.append(f"| `{path}` | `{default!r}` | {_cell(desc)} | {_cell(plain)} |")
    rows.append(
        "| `training.<any TrainingArguments / SFTConfig field>` | library default | passed through as is | |"
    )
    return "\n".join(rows) + "\n"


def cmd_builtin(args: argparse.Namespace, rest: list[str]) -> int:
    print(builtin.resolve(f"builtin:{args.name}"))
    return 0


def cmd_start(args: argparse.Namespace, rest: list[str]) -> int:
    print(scheduler.submit(cfg.load(args.config), runs.runs_root(args.home)))
    return 0


def cmd_job(args: argparse.Namespace, rest: list[str]) -> int:
    """stop | cancel | resume | check RUN_DIR: the run's status afterwards, as JSON."""
    action = {
        "stop": lambda d: scheduler.stop(d, wait=120.0),
        "cancel": scheduler.cancel,
        "resume": scheduler.resume,
        "check": jobs.reconcile,
    }[args.command]
    print(json.dumps(action(args.run_dir.resolve()), indent=1, ensure_ascii=False))
    return 0


def cmd_queue(args: argparse.Namespace, rest: list[str]) -> int:
    print("\n".join(scheduler.queue(runs.runs_root(args.home))))
    return 0


def cmd_supervise(args: argparse.Namespace, rest: list[str]) -> int:
    return scheduler.supervise_forever(runs.runs_root(args.home))


def cmd_runs(args: argparse.Namespace, rest: list[str]) -> int:
    for run in runs.list_runs(runs.runs_root(args.home)):
        loss = f"{run.final_loss:.4f}" if run.final_loss is not None else "-"
        took = runs.clock(run.duration)
        print(f"{run.id:<40} {run.state:<9} {run.started_at or '-':<26} {took:>8} {loss}")
    return 0


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def cmd_chat(args: argparse.Namespace, rest: list[str]) -> int:
    """Each turn's answer streamed to stdout; how it ended and how fast, to stderr. ``/reset`` forgets."""
    from finetune import inference

    loaded = inference.load(args.run_dir.resolve(), checkpoint=args.checkpoint, base=args.base)
    settings = cfg.generation_settings(loaded.config.generation, rest)
    print(f"{args.run_dir.name} · {loaded.weights} · {loaded.device}", file=sys.stderr)
    turns = [args.prompt] if args.prompt is not None else (line.rstrip("\n") for line in sys.stdin)
    history: list[dict[str, str]] = []
    for text in turns:
        if text.strip() == "/reset":
            history = []
            continue
        if loaded.config.task == "classification":
            print("  ".join(f"{name} {p:.3f}" for name, p in inference.classify(loaded, text)), flush=True)
            continue
        history.append({"role": "user", "content": text})
        reply = _stream_reply(inference.stream(loaded, history if loaded.template else text, settings))
        history.append({"role": "assistant", "content": reply.text})
    return 0


def _stream_reply(pieces) -> object:
    reply = None
    for piece in pieces:
        if isinstance(piece, str):
            print(piece, end="", flush=True)
        else:
            reply = piece
    first = f"{reply.first_token_seconds:.2f} s" if reply.first_token_seconds is not None else "-"
    end = "stopped at the end of turn" if reply.stopped else "cut at max_new_tokens"
    print(f"\n[{reply.tokens} tokens, {end}; first token {first}, {reply.seconds:.2f} s]", file=sys.stderr)
    return reply


def cmd_check_stops(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import inference, stops

    result = stops.run_check(inference.load(args.run_dir.resolve(), checkpoint=args.checkpoint))
    print(json.dumps(result, indent=1, ensure_ascii=False) if args.json else stops.summary(result))
    return 0


def cmd_eval(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import evaluate

    run_dir = args.run_dir.resolve()
    result = evaluate.run(run_dir, checkpoint=args.checkpoint, base=args.base, samples=args.samples)
    print(json.dumps(result, indent=1, ensure_ascii=False) if args.json else evaluate.summary(result))
    return 0


def cmd_export(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import export

    done = export.export(
        args.run_dir.resolve(), checkpoint=args.checkpoint, merge=args.merge, output=args.output,
        force=args.force, push=args.push, private=args.private, say=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(done.folder)
    if done.url:
        print(done.url)
    return 0


def cmd_worker(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import worker

    worker.serve()
    return 0


def cmd_analyst(args: argparse.Namespace, rest: list[str]) -> int:
    from finetune import analyst

    analyst.serve()
    return 0


COMMANDS = {
    "schema": cmd_schema,
    "train": cmd_train,
    "plan": cmd_plan,
    "calibrate": cmd_calibrate,
    "render": cmd_render,
    "tokens": cmd_tokens,
    "presets": cmd_presets,
    "builtin": cmd_builtin,
    "start": cmd_start,
    **dict.fromkeys(("stop", "cancel", "resume", "check"), cmd_job),
    "queue": cmd_queue,
    "supervise": cmd_supervise,
    "runs": cmd_runs,
    "chat": cmd_chat,
    "check-stops": cmd_check_stops,
    "eval": cmd_eval,
    "export": cmd_export,
    "worker": cmd_worker,
    "analyst": cmd_analyst,
}

if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
