"""Tuneboard's dashboard: a Gradio page that builds configs, starts and stops jobs, and reads run directories.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]      # TUNEBOARD_HOME: uploads and runs

It never trains in its own process and never loads model weights for training: Start writes a config into a
new run directory and spawns ``python -m finetune train`` (finetune/jobs.py); the page follows the run's files
(finetune/runs.py). One module per section (dataset_tab, template_tab, tokens_tab, hparams_tab, run_tab,
runs_tab), the form binder (binder.py), strings in locales/*.yaml, styles in style.css.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

UI_DIR = Path(__file__).resolve().parent
MAX_UPLOAD = "200mb"  # a fine-tuning table, not a model; raise it here if your data is bigger


def launch_kwargs(home: Path, blocks: Any) -> dict[str, Any]:
    """Everything ``Blocks.launch`` needs besides host and port: theme, CSS, TensorBoard route, limits."""
    import gradio as gr

    from finetune import runs
    from finetune.ui import tensorboard

    return {
        "theme": gr.themes.Soft(
            primary_hue="indigo",
            secondary_hue="slate",
            font=["Inter", "Noto Sans JP", "IPAPGothic", "ui-sans-serif", "sans-serif"],
        ),
        "css_paths": [UI_DIR / "style.css"],
        "app_kwargs": {"routes": tensorboard.routes(runs.runs_root(home), blocks)},
        "show_error": False,  # engine messages reach the page as field errors; tracebacks stay in the log
        "max_file_size": MAX_UPLOAD,
        "allowed_paths": [],
        "footer_links": ["gradio", "settings"],
    }


def build(home: Path) -> Any:
    from finetune.ui.page import build as build_page

    return build_page(home)
