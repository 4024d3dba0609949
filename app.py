"""Tuneboard: configure and launch fine-tuning runs from a web page.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]
    TUNEBOARD_HOME=DIR python app.py     # uploads and runs live there (default: ./tuneboard_home)

Settings only: the page is finetune/ui/, the jobs it starts are finetune/jobs.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    port = int(os.environ.get("GRADIO_SERVER_PORT", 7860))
    parser.add_argument("--port", type=int, default=port, help="port (default 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a gradio.live link (default off)")
    args = parser.parse_args()
    home = Path(os.environ.get("TUNEBOARD_HOME", "tuneboard_home")).resolve()
    os.environ["TUNEBOARD_HOME"] = str(home)  # the training processes see the same data directory
    home.mkdir(parents=True, exist_ok=True)

    from finetune import ui

    demo = ui.build(home)
    demo.queue(default_concurrency_limit=4)
    settings = ui.launch_kwargs(home, demo)  # theme, CSS, TensorBoard route, upload limit, no tracebacks
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, **settings)


if __name__ == "__main__":
    main()
