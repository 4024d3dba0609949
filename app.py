"""Tuneboard: configure and launch fine-tuning runs from a web page.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]
    TUNEBOARD_HOME=DIR python app.py     # uploads, runs, Gradio's cache (default: ./tuneboard_home)
    TUNEBOARD_AUTH=user:password python app.py     # a login (or a file of such lines; README: Security)

Settings only: the page is finetune/ui/, who may open it is finetune/ui/auth.py, the jobs it starts are
finetune/jobs.py. Listens on 127.0.0.1 unless --host (or GRADIO_SERVER_NAME, which Spaces set) says otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # whatever the shell says: the page never phones home
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    parser.add_argument("--host", default=host, help="address to bind (default 127.0.0.1: this machine only)")
    port = int(os.environ.get("GRADIO_SERVER_PORT", 7860))
    parser.add_argument("--port", type=int, default=port, help="port (default 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a gradio.live link (default off)")
    args = parser.parse_args()
    from finetune import paths  # the engine's data-directory default ($TUNEBOARD_HOME, else ./tuneboard_home)

    home = paths.home().resolve()
    os.environ["TUNEBOARD_HOME"] = str(home)  # the training processes see the same data directory
    if problem := paths.writable_problem(home):
        sys.exit(f"tuneboard: {problem}")

    from finetune import ui  # gradio is not imported yet: its cache must be set first
    from finetune.ui import auth

    os.environ.update(ui.gradio_env(home))
    try:
        login = auth.from_env()
    except auth.LoginError as exc:
        sys.exit(f"tuneboard: {exc}")
    if refusal := auth.container_refusal(args.host, login):
        sys.exit(f"tuneboard: {refusal}")
    if warning := auth.exposure_warning(args.host, args.share, login):
        print(warning, file=sys.stderr, flush=True)

    demo = ui.build(home, shared=auth.is_shared(args.host, args.share, login))
    ui.queue(demo)  # a size, and polling that leaves the CPU to the training run
    settings = ui.launch_kwargs(home, demo, login)  # theme, routes, login, upload limit, no tracebacks
    if os.environ.get("TUNEBOARD_CONTAINER") or os.environ.get("SYSTEM") == "spaces":  # a Space is one too
        signal.signal(signal.SIGTERM, lambda *_: _container_stops(home))
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **settings)


def _container_stops(home: Path) -> None:
    """docker stop: the runs are in sessions of their own, so tini's SIGTERM reaches only this process. Stop
    them with a checkpoint (they resume when the container starts again), then let Gradio close."""
    from finetune import runs, scheduler

    grace = float(os.environ.get("TUNEBOARD_STOP_GRACE", "90"))  # docker run --stop-timeout must be longer
    stopped = scheduler.stop_for_shutdown(runs.runs_root(home), wait=grace)
    print(f"tuneboard: stopping; runs stopped with a checkpoint, to resume on the next start: {stopped}")
    raise KeyboardInterrupt  # gradio's launch() closes the server on it and returns


if __name__ == "__main__":
    main()
