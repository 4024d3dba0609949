"""Tuneboard's dashboard: a Gradio page that builds configs, starts and stops jobs, and reads run directories.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]      # TUNEBOARD_HOME: uploads and runs

It never trains in its own process and never loads model weights for training: Start writes a config into a
new run directory and spawns ``python -m finetune train`` (finetune/jobs.py); the page follows the run's files
(finetune/runs.py). One module per section (dataset_tab, template_tab, tokens_tab, hparams_tab, run_tab,
runs_tab), the form binder (binder.py), strings in locales/*.yaml, styles in style.css.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finetune.ui.auth import Login

UI_DIR = Path(__file__).resolve().parent


def cache_dir(home: Path) -> Path:
    """Gradio's upload and output cache: inside the data directory, so /gradio_api/file= serves only that."""
    return home / ".gradio-cache"


def gradio_env(home: Path) -> dict[str, str]:
    """Environment to set before gradio is first imported (it reads GRADIO_TEMP_DIR at import)."""
    return {
        "GRADIO_TEMP_DIR": str(cache_dir(home)),
        "GRADIO_EXAMPLES_CACHE": str(cache_dir(home) / "examples"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


QUEUE_SIZE = 256  # events waiting at once, all browsers together (each page load sends several)


def queue_kwargs() -> dict[str, Any]:
    """``Blocks.queue`` settings. The size is always given: on ZeroGPU hardware gradio 6.31 caps an unset
    queue at one waiting event (its GPU calls go one at a time), which drops the page's own events at load
    (the analysis, the run on screen), and the page never fills in."""
    return {"default_concurrency_limit": 4, "max_size": QUEUE_SIZE}


# Gradio 6.31's queue looks for work every 1 ms while it has none, and for progress to send every 10 ms: 9% of
# a core with no page open, which a CPU training run beside the app pays for. At 20 ms and 100 ms the app
# idles at 1-2% of a core, and an event starts at most 20 ms later (progress is the page's own, live.py).
QUEUE_POLLS = {"sleep_when_free": 0.02, "progress_update_sleep_when_free": 0.1}


def queue(blocks: Any) -> Any:
    """``blocks.queue(**queue_kwargs())``, then the queue's polling slowed to QUEUE_POLLS."""
    blocks.queue(**queue_kwargs())
    for name, seconds in QUEUE_POLLS.items():
        setattr(blocks._queue, name, seconds)
    return blocks


def launch_kwargs(home: Path, blocks: Any, login: Login | None = None) -> dict[str, Any]:
    """Everything ``Blocks.launch`` needs besides host and port: theme, CSS, routes, login, limits.

    ``login`` is :func:`finetune.ui.auth.from_env`'s answer (default: no login).
    """
    import gradio as gr
    from starlette.middleware import Middleware

    from finetune import runs, uploads
    from finetune.ui import auth, gate, head, i18n, live, tensorboard

    login = login or auth.Login()
    _check_cache(home)
    root = runs.runs_root(home)
    routes, middleware = auth.hf_sign_in(blocks) if login.kind == "huggingface" else ([], [])
    middleware = [*middleware, Middleware(gate.Gate, home=home, login=login.kind)]  # inside the session
    middleware.append(Middleware(head.HeadScript))  # frames.js before Gradio's modules (head.py says why)
    return {
        "theme": gr.themes.Soft(
            primary_hue="indigo",
            secondary_hue="slate",
            font=["Inter", "Noto Sans JP", "IPAPGothic", "ui-sans-serif", "sans-serif"],
        ),
        "css_paths": [UI_DIR / "style.css"],
        "js": live.LIVE_JS,  # the Run section's live line (finetune/ui/live.py)
        "i18n": gr.I18n(**{lang: texts["dictionary"] for lang, texts in i18n.gradio_texts().items()}),
        "app_kwargs": {
            "routes": [*routes, *live.routes(root, blocks), *tensorboard.routes(root, blocks)],
            "middleware": middleware,
            "openapi_url": None,  # FastAPI's schema route would answer without a login
        },
        "show_error": False,  # engine messages reach the page as field errors; tracebacks stay in the log
        "max_file_size": uploads.max_bytes(),  # the same limit finetune/uploads.py enforces on the copy
        "allowed_paths": [],
        "blocked_paths": _secret_folders(home),
        "ssr_mode": False,  # SSR puts a Node server in front of the gate; the page needs no SEO
        "mcp_server": False,
        "footer_links": ["gradio", "settings"],
        # Gradio 6.31's launch() sends itself one HEAD / with a 3 s timeout and exits ("localhost is not
        # accessible") when it times out: on a machine busy with a training run (restarting the dashboard
        # mid-run) that request can be slower. /healthz says whether the app is up (tests/e2e/conftest.py).
        "_frontend": False,
        **login.launch,
    }


def _check_cache(home: Path) -> None:
    """Refuse to start with Gradio's cache elsewhere: whatever lands there can be fetched by any client."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    if not folder.is_relative_to(home.resolve()):
        raise RuntimeError(
            f"Gradio's cache {folder} lies outside the data directory {home}: set the variables of "
            "finetune.ui.gradio_env(home) before gradio is imported, as app.py does"
        )


def _secret_folders(home: Path) -> list[str]:
    """The Hugging Face cache (holds the token) and the model cache: never served, never copied out."""
    from huggingface_hub import constants

    from finetune import builtin

    folders = [Path(constants.HF_HOME).resolve(), builtin.cache_root().resolve()]
    return [str(f) for f in folders if not home.resolve().is_relative_to(f)]  # a home inside stays usable


def build(home: Path, *, shared: bool = False) -> Any:
    """The page over the data directory ``home``, and the one supervisor thread that moves its queue.

    ``shared``: people other than the machine's owner can reach the page (auth.is_shared), so typed paths are
    limited to the allowed folders (finetune/paths.py).
    """
    from finetune import paths, runs, scheduler
    from finetune.ui import previews
    from finetune.ui.page import build as build_page

    scheduler.Supervisor.ensure(runs.runs_root(home), check=previews.check_again)
    return build_page(home, paths.Access.from_env(home, shared=shared))
