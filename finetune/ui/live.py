"""The Run section's live line: the watched run's progress and new log lines, as JSON, polled once a second.

    GET /tb-live/RUN_ID?lang=ja&log=OFFSET     (live.js in the page; behind the page's login)

Why not a Gradio event: every Gradio event, however small its output, makes Gradio 6.31's page walk all of
its ~450 components to update their loading status (measured with chromium's profiler while a run trained
at one event a second: the page's renderer took ~80% of a core, most of it there, on a machine whose two
cores the training shares). A fetch and two innerHTML writes cost next to nothing. So the page's script
polls this route for what changes every second (the progress bar, the log) and clicks the hidden refresh
button (run_tab's ``refresh``) only when the run's state or the queue changed, for what a Gradio event
must redraw: Stop/Resume, the queue, the config panel, and when the first metrics of a run arrive (its first
plot); the plots then follow a slow gr.Timer (PLOT_EVERY).

The answer is rendered by the same functions as the Gradio view (run_tab.progress_bar), so the line reads
the same whichever drew it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from finetune import jobs, runs, scheduler
from finetune import status as st
from finetune.ui import auth, i18n, run_tab

PREFIX = "/tb-live"
RUN_ID = re.compile(r"[\w][\w.-]{0,199}")  # a run folder's name (rundir.new_run_id); never a path


def snapshot(root: Path, run_id: str, lang: str, log_off: int) -> dict[str, Any] | None:
    """What the page's live line shows of ``run_id`` now; None when no such run. ``log_off`` < 0: no log."""
    if not RUN_ID.fullmatch(run_id) or not (root / run_id).is_dir():
        return None
    run_dir = root / run_id
    status = jobs.reconcile(run_dir)
    waiting = scheduler.queue(root)
    rows = runs.recent_metrics(run_dir)
    lines, log_off = runs.read_log(run_dir, log_off) if log_off >= 0 else ([], log_off)
    return {
        "state": status.get("state") or st.UNKNOWN,
        "active": st.is_active(status),
        "queue": waiting,
        "progress": run_tab.progress_bar(run_id, status, rows, waiting, lang),
        "points": len(rows),  # metrics rows: the page's first plot is drawn once there are some
        "log": lines,
        "log_off": log_off,
    }


def routes(root: Path, blocks: Any = None) -> list[Route]:
    """The route to pass with TensorBoard's in ``launch(app_kwargs={"routes": ...})``."""
    root = Path(root)

    async def live(request: Request) -> JSONResponse:
        """The login check (as TensorBoard's route: one mounted beside Gradio gets none), then snapshot."""
        if not await auth.allowed(auth.gradio_app(request.scope, blocks), request):
            return JSONResponse({"error": "log in first"}, status_code=401)
        lang = i18n.pick_lang(request.query_params.get("lang"))
        try:
            log_off = int(request.query_params.get("log", "-1"))
        except ValueError:
            log_off = -1
        import anyio.to_thread

        run_id = request.path_params["run_id"]
        got = await anyio.to_thread.run_sync(snapshot, root, run_id, lang, log_off)
        if got is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return JSONResponse(got, headers={"Cache-Control": "no-store"})

    return [Route(PREFIX + "/{run_id}", live, methods=["GET"])]


LIVE_JS = (Path(__file__).resolve().parent / "live.js").read_text(encoding="utf-8")
