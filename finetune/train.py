"""The training process: one config in, one run directory out. Read it top to bottom.

    python -m finetune train presets/demo.yaml [--training.learning_rate 1e-4 ...] [--run-dir DIR] [--resume]

What it does, in order:
1. Preflight (finetune.preflight): tokenizer, new tokens, template, dataset. A failure here writes nothing.
2. Creates RUN_DIR with the files that define the run (finetune/rundir.py: config.yaml with the preset
   merged in, template.jinja, family.yaml, effective_config.yaml), written once: a resumed attempt reads
   them back and rewrites none; plus status.json (state, pid, progress) and history.jsonl (attempts).
3. Loads the model (dtype per device; 4-bit for qlora), resizes embeddings for new tokens, adds LoRA and
   makes the new token rows trainable in the input embedding and the output head.
4. Trains with TRL's SFTTrainer (sft, text) or transformers' Trainer (classification), writing
   metrics.jsonl, TensorBoard events under RUN_DIR/tensorboard, and checkpoint-N folders. Conversations reach
   TRL already tokenized, with their loss mask, by the renderer the preview uses (cached: encoding.py).
5. Saves the model or adapter + tokenizer + trainer_state.json to RUN_DIR/final.
SIGTERM / Ctrl-C stop at the end of the current step with a checkpoint (state ``stopped``); any exception
marks the run ``failed`` with a one-line reason and the last log lines. Refused: qlora without a CUDA GPU and
bitsandbytes; bf16/fp16 where the device lacks them; tokens.add for classification.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from finetune import (
    batching,
    callbacks,
    duration,
    effective,
    encoding,
    failures,
    inference,
    jobs,
    model,
    notify,
    paths,
    preflight,
    procs,
    rundir,
    runs,
    speed,
    stops,
    tokens,
)
from finetune import resume as resume_mod
from finetune import status as st
from finetune.config import Config, dump_yaml
from finetune.errors import JobError
from finetune.redact import redact

FINAL_DIR = "final"


def default_run_dir(config: Config) -> Path:
    return runs.runs_root(paths.home()) / jobs.run_name(config)


def main(config: Config, run_dir: Path | None = None, *, resume: bool = False) -> int:
    """Train; returns the process exit code (0 finished or stopped, 1 failed)."""
    run_dir = Path(run_dir or default_run_dir(config))
    alone_or_first = rank() == 0
    code = (train if alone_or_first else other_rank)(config, run_dir, resume=resume)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Everything is written. Freeing DDP's reducer after another rank has left joins gloo's worker
        # threads, which can wait forever (seen with torch 2.13): leave without the interpreter's clean-up,
        # the trainer still held (_KEPT_UNTIL_EXIT) so returning from train/other_rank frees nothing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def train(config: Config, run_dir: Path, *, resume: bool = False) -> int:
    """Rank 0 (or the only process): preflight, the run files, training, and the run's end in status.json."""
    started = duration.process_started()
    try:  # a run that started before keeps the template and family it resolved then
        checked = preflight.run(config, pinned=rundir.pinned(run_dir))  # raises before anything is written
    except Exception as exc:
        _refused(run_dir, exc)  # a queued job records why it never started
        raise
    device = model.detect_device()
    write_run_files(run_dir, config, checked, device)  # a full or read-only disk: JobError, nothing left
    _capture_output(run_dir)
    for warning in checked.warnings:
        print(f"warning: {warning}", flush=True)
    checkpoint = resume_from(run_dir) if resume else None
    previous = st.read(run_dir)
    attempt = resume_mod.attempt_fields(previous, resume_mod.checkpoint_step(checkpoint))
    rundir.record_attempt(run_dir, attempt=attempt["attempt"], resume=resume, checkpoint=_name(checkpoint))
    st.update(
        run_dir, run_id=run_dir.name, **procs.identity(os.getpid()), **attempt, **_launcher(), checking=None
    )
    st.update_if(run_dir, RUNNABLE, state=st.RUNNING)  # a stop asked meanwhile stays "stopping"
    try:
        trainer, stopper, recorder = build_trainer(config, checked, device, run_dir, attempt["prior_seconds"])
        st.update(run_dir, world_size=trainer.args.world_size)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        _say_steps(trainer)
        if recorder.diverged_at is not None:
            reason = _nan_reason(recorder.diverged_at, recorder.first_logged_step)
            return _end(run_dir, st.FAILED, 1, reason=reason, log_tail=_tail(run_dir))
        if stopper.requested:
            _leave_group()
            return _end(run_dir, st.STOPPED, 0, checkpoint=_name(resume_mod.last_checkpoint(run_dir)))
        save_final(trainer, checked.tokenizer, run_dir / FINAL_DIR)
        record_speed(config, trainer.args, device, run_dir, recorder, started)
        _leave_group()
        stop_check(config, checked, trainer.model, run_dir, lambda: stopper.requested)
        print(f"finished: {run_dir / FINAL_DIR}", flush=True)
        return _end(run_dir, st.FINISHED, 0, final=FINAL_DIR)
    except BaseException as exc:  # noqa: BLE001 - every way of dying must end in status.json
        traceback.print_exc()
        if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C / SIGTERM: the user insisted
            return _end(run_dir, st.STOPPED, 1, reason=failures.reason_of(exc), log_tail=_tail(run_dir))
        tail = _tail(run_dir)
        reason = failures.explain(failures.reason_of(exc), tail)
        return _end(run_dir, st.FAILED, 1, reason=reason, log_tail=tail)


RUNNABLE = (None, st.QUEUED, st.STARTING, st.RUNNING, *st.FINAL_STATES)


def _launcher() -> dict[str, Any]:
    """A run started by a cluster scheduler (presets/launch/schedulers/ set TUNEBOARD_LAUNCHER) says so, and
    where: the page's supervisor cannot see processes on other machines, so it leaves such runs to report
    their own end."""
    launcher = os.environ.get("TUNEBOARD_LAUNCHER")
    return {"launcher": launcher, "host": socket.gethostname()} if launcher else {}


def rank() -> int:
    """This process's rank in a multi-process run (`accelerate launch` sets RANK); 0 when alone."""
    return int(os.environ.get("RANK", "0"))


def other_rank(config: Config, run_dir: Path, *, resume: bool) -> int:
    """Rank 1 and up of a multi-process run: the same training on its share of the data, writing nothing in
    the run directory; rank 0 writes status, metrics, checkpoints' trainer state and the final model."""
    checked = preflight.run(config, pinned=rundir.pinned(run_dir))
    device = model.detect_device()
    checkpoint = resume_mod.last_checkpoint(run_dir) if resume else None
    trainer, stopper, _ = build_trainer(config, checked, device, run_dir)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    _say_steps(trainer)
    if not stopper.requested:  # FSDP and DeepSpeed gather the weights from every rank to save them
        trainer.save_model(str(run_dir / FINAL_DIR))
    _leave_group()
    return 0


def _say_steps(trainer: Any) -> None:
    """In a multi-process run, each rank says how far it got (the log shows that every rank stepped)."""
    if trainer.args.world_size > 1:
        print(f"rank {rank()} of {trainer.args.world_size}: {trainer.state.global_step} steps", flush=True)


def _leave_group() -> None:
    """End a multi-process run's process group before exit: left to the interpreter's exit, gloo and NCCL
    can abort the process after training succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _nan_reason(step: int, first_logged: int | None) -> str:
    reason = (
        f"loss became NaN/inf at step {step}: lower training.learning_rate, keep training.max_grad_norm on, "
        "or switch fp16 to bf16"
    )
    if step == first_logged:  # no step ever gave a finite loss: the rate is not the problem
        reason += "; it was NaN from the first step, so the model's own weights may be broken"
    return reason


def resume_from(run_dir: Path) -> Path | None:
    """The checkpoint to continue from; the curves are rewound to it (to step 0 when there is none)."""
    checkpoint = resume_mod.last_checkpoint(run_dir)
    where = checkpoint.name if checkpoint else "the beginning (no complete checkpoint yet)"
    print(f"=== {st.now_iso()} resuming from {where} ===", flush=True)
    resume_mod.rewind(run_dir, resume_mod.checkpoint_step(checkpoint))
    return checkpoint


def _end(run_dir: Path, state: str, code: int, **fields: Any) -> int:
    st.update(run_dir, state=state, ended_at=st.now_iso(), **fields)
    notify.once(run_dir, background=False)  # this process is about to exit: send before it does
    return code


def _refused(run_dir: Path, exc: BaseException) -> None:
    if (run_dir / "status.json").is_file():
        fields = {"state": st.FAILED, "ended_at": st.now_iso(), "reason": str(exc)[:500]}
        if st.update_if(run_dir, (st.QUEUED, st.STARTING), **fields):
            notify.once(run_dir, background=False)


def write_run_files(run_dir: Path, config: Config, checked: preflight.Checked, device: model.Device) -> None:
    """The files that define the run (finetune/rundir.py), each written whole, once: a resumed attempt
    finds them and changes none; a full or read-only disk leaves no half-written run directory."""
    rows = effective.effective(  # first: it refuses what the device cannot do (bf16 on a CPU)
        config,
        cuda=device.kind == "cuda",
        bf16_ok=device.bf16,
        has_eval=checked.dataset.eval is not None,
        memory_gb=device.memory_gb,
    )
    files = rundir.definition_files(config, checked.template, checked.family)
    files[rundir.EFFECTIVE] = dump_yaml(effective.as_yaml_dict(rows))
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_new(run_dir, files)
    except OSError as exc:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)  # no half-written directory that looks like a run
        raise JobError(f"cannot write the run directory {run_dir}: {jobs.os_reason(exc)}") from None


def build_trainer(
    config: Config,
    checked: preflight.Checked,
    device: model.Device,
    run_dir: Path,
    prior_seconds: float = 0.0,
):
    # transformers 5 removed TrainingArguments.logging_dir; the TensorBoard callback reads this variable.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    has_eval = checked.dataset.eval is not None
    args = effective.training_args(
        config,
        str(run_dir),
        cuda=device.kind == "cuda",
        bf16_ok=device.bf16,
        has_eval=has_eval,
        memory_gb=device.memory_gb,
    )
    _first_order(args, run_dir)
    num_labels = len(checked.dataset.label_names or []) or None
    attn = speed.attn_implementation(config, device)
    net = model.load_model(config, device, num_labels=num_labels, attn_implementation=attn)
    if speed.liger_on(config, device):
        print(speed.apply_liger(net), flush=True)
    tokens.resize_and_init(net, checked.tokenizer, checked.token_changes, config.tokens.init)
    net.config.pad_token_id = checked.tokenizer.pad_token_id
    if config.method != "full":
        net = add_lora(net, config, checked.token_changes.new_ids)
    stopper = callbacks.StopOnSignal()
    recorder = callbacks.RunRecorder(run_dir, prior_seconds)
    if config.task == "classification":
        return _quiet(_classifier_trainer(net, args, checked, [recorder, stopper])), stopper, recorder
    from trl import SFTTrainer

    train, evals = checked.dataset.train, checked.dataset.eval
    if config.task == "sft":
        train = encoding.tokenized(config, checked, train)
        evals = evals and encoding.tokenized(config, checked, evals)
    trainer_class = batching.in_passes(
        batching.shuffled(SFTTrainer), speed.micro_batch_tokens(config, device)
    )
    trainer = trainer_class(
        model=net,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=checked.tokenizer,
        callbacks=[recorder, stopper],
    )
    return _quiet(trainer), stopper, recorder


def _first_order(args: Any, run_dir: Path) -> None:
    """A resumed run keeps the batch order of its first attempt (effective_config.yaml, written once): the
    Trainer skips the batches already trained on, which only means the same records in the same order."""
    first = (rundir.first_effective(run_dir).get("training") or {}).get("train_sampling_strategy")
    if first and first != args.train_sampling_strategy:
        print(f"batch order: {first}, as in the run's first attempt", flush=True)
        args.train_sampling_strategy = first


# The trainers of a multi-process run, held until os._exit (main): freeing one frees DDP's reducer, which
# joins gloo's worker threads and can wait forever once another rank has left (seen with torch 2.13).
_KEPT_UNTIL_EXIT: list[Any] = []


def _quiet(trainer: Any) -> Any:
    """RunRecorder prints one line per log; transformers' PrinterCallback would print each dict again."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if trainer.args.world_size > 1:
        _KEPT_UNTIL_EXIT.append(trainer)
    return trainer


def add_lora(net: Any, config: Config, new_token_ids: list[int]) -> Any:
    from peft import get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        net = prepare_model_for_kbit_training(
            net, use_gradient_checkpointing=bool(config.training.gradient_checkpointing)
        )
    net = get_peft_model(net, model.lora_config(config))
    tokens.train_new_rows(net, new_token_ids)
    trainable, total = net.get_nb_trainable_parameters()
    print(
        f"LoRA: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)", flush=True
    )
    return net


def _classifier_trainer(net: Any, args: Any, checked: preflight.Checked, cbs: list) -> Any:
    from transformers import DataCollatorWithPadding, Trainer

    names = checked.dataset.label_names or []
    net.config.id2label = dict(enumerate(names))
    net.config.label2id = {n: i for i, n in enumerate(names)}
    tok, max_length = checked.tokenizer, checked.config.dataset.max_length

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return tok(batch["text"], truncation=True, max_length=max_length)

    train = checked.dataset.train.map(encode, batched=True, remove_columns=["text"])
    evals = (
        checked.dataset.eval.map(encode, batched=True, remove_columns=["text"])
        if checked.dataset.eval
        else None
    )
    return batching.shuffled(Trainer)(
        model=net,
        args=args,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
        callbacks=cbs,
    )


def save_final(trainer: Any, tokenizer: Any, out: Path) -> None:
    """The standard Hugging Face layout: model or adapter, tokenizer, trainer_state.json."""
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    if not (out / "config.json").exists():
        # An adapter folder has no model config; a classifier's labels (num_labels, id2label) live there,
        # so keep it beside the adapter: AutoConfig.from_pretrained(final) gives what the base model needs.
        base = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
        base.config.save_pretrained(str(out))


def stop_check(config: Config, checked: preflight.Checked, net: Any, run_dir: Path, should_stop: Any) -> None:
    """after.stop_check: does the tuned model end its answers (stops.json)? It never fails the run: the
    model is saved already."""
    if not config.after.stop_check or config.task == "classification":
        return
    try:
        loaded = inference.from_model(run_dir, config, net, checked.tokenizer, checked.template)
        asked, source = stops.prompts(checked, config.after.stop_check_prompts)
        print(f"stop check: answering {len(asked)} {source} prompts greedily", flush=True)
        seconds = config.after.stop_check_seconds

        def answered(n: int) -> None:  # the page says what the process does after the last step
            st.update(run_dir, checking={"answered": n, "asked": len(asked), "limit_s": seconds})

        answered(0)
        result = stops.check(
            loaded, asked, source, seconds=seconds, should_stop=should_stop, answered=answered
        )
        stops.write(run_dir, result)
        print(stops.summary(result), flush=True)
    except Exception as exc:  # noqa: BLE001 - the run has finished; the check is extra
        traceback.print_exc()
        print(f"warning: the stop check failed ({failures.reason_of(exc)}); final/ is saved", flush=True)
    finally:
        st.update(run_dir, checking=None)


def record_speed(
    config: Config, args: Any, device: model.Device, run_dir: Path, recorder: Any, started: float
) -> None:
    """This run's speed, for the next run's duration estimate (finetune/duration.py)."""
    rate = duration.speed_of(runs.read_metrics(run_dir))
    if rate is None or recorder.first_step_at is None:
        return
    first_step = recorder.first_step_at - started
    source = os.environ.get("TUNEBOARD_SPEED_SOURCE") or f"run {run_dir.name}"
    duration.record(
        duration.key(config, args, device), tokens_per_second=rate, first_step_s=first_step, source=source
    )
    print(f"speed: {rate:,.0f} tokens/s; first step {first_step:.1f} s after start", flush=True)


def _name(path: Path | None) -> str | None:
    return path.name if path else None


def _tail(run_dir: Path, lines: int = 20) -> list[str]:
    sys.stdout.flush()
    return runs.log_tail(run_dir, lines)[0]


class _Redacting:
    """A text stream that hides Hugging Face tokens before passing text on to each of ``streams``."""

    def __init__(self, *streams: Any):
        self.streams = streams

    def write(self, text: str) -> int:
        text = redact(text)
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


def _capture_output(run_dir: Path) -> None:
    """Redact tokens from this process's output; on the CLI also copy it to train.log.

    Under the job supervisor stdout/stderr already are train.log (opened by finetune/procs.py).
    """
    if os.environ.get("TUNEBOARD_SUPERVISED"):
        sys.stdout, sys.stderr = _Redacting(sys.__stdout__), _Redacting(sys.__stderr__)
        return
    log = (run_dir / "train.log").open("a", encoding="utf-8", buffering=1)
    sys.stdout = _Redacting(sys.__stdout__, log)
    sys.stderr = _Redacting(sys.__stderr__, log)
