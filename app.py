"""Tuneboard: configure and launch fine-tuning runs from a web page.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]
    TUNEBOARD_HOME=DIR python app.py     # uploads and runs live there (default: ./tuneboard_home)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860, or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (default off)")
    args = parser.parse_args()
    home = Path(os.environ.get("TUNEBOARD_HOME", "tuneboard_home")).resolve()
    os.environ["TUNEBOARD_HOME"] = str(home)  # the training processes write their runs here too
    home.mkdir(parents=True, exist_ok=True)

    from finetune import ui

    demo = ui.build(home)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, share=args.share, **ui.launch_kwargs(home, demo)
    )


if __name__ == "__main__":
    main()
