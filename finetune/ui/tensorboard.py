"""TensorBoard inside the dashboard: its WSGI app served by the same server, under /tensorboard/, behind the
same login as the page.

    .venv/bin/pytest tests/ui/test_tensorboard.py -q

A Space (or any single-port host) exposes one port, so TensorBoard cannot run beside the app on 6006.
Instead its WSGI app is mounted as a route of Gradio's own FastAPI app, passed as
``launch(app_kwargs={"routes": ...})`` so it is matched before Gradio's own routes; it reads every run's
RUN_DIR/tensorboard under the runs folder.
A route mounted beside Gradio is not covered by Gradio's login; the dashboard's gate (gate.py) refuses anyone
not signed in, and :class:`TensorBoardRoute` checks again (auth.allowed) so it is safe mounted on its own.
TensorBoard is built on the first request (a second or two), never at startup.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import Mount

from finetune.ui import auth

PREFIX = "/tensorboard"
RELOAD_SECONDS = 2.0  # how often TensorBoard re-reads event files of live runs


def make_wsgi_app(logdir: Path) -> Any:
    """TensorBoard's WSGI app over ``logdir`` (every run folder below it is a TensorBoard run)."""
    from tensorboard import program
    from tensorboard.backend import application

    logdir.mkdir(parents=True, exist_ok=True)
    tb = program.TensorBoard()
    # load_fast=false: the Python reader, in this process; "auto" would start Rust's data server as a child.
    tb.configure(logdir=str(logdir), load_fast="false", reload_interval=RELOAD_SECONDS)
    provider, multiplexer = tb._make_data_provider()  # what TensorBoard.main() does before serving
    return application.TensorBoardWSGIApp(
        tb.flags, tb.plugin_loaders, provider, tb.assets_zip_provider, multiplexer
    )


class TensorBoardRoute:
    """An ASGI app: login check, then TensorBoard's WSGI app (built on first use)."""

    def __init__(self, logdir: Path, blocks: Any = None):
        self.logdir = Path(logdir)
        self.blocks = blocks
        self._asgi: Any = None
        self._lock = threading.Lock()

    def _app(self) -> Any:
        with self._lock:
            if self._asgi is None:
                with warnings.catch_warnings():  # starlette 1.x deprecates it in favour of a2wsgi (not a dep)
                    warnings.simplefilter("ignore")
                    from starlette.middleware.wsgi import WSGIMiddleware
                self._asgi = WSGIMiddleware(make_wsgi_app(self.logdir))
            return self._asgi

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not await self.authorized(scope):
            response = PlainTextResponse(
                "Log in to the dashboard first, then open TensorBoard from the page.", status_code=401
            )
            await response(scope, receive, send)
            return
        if scope["path"].rstrip("/") == PREFIX and not scope["path"].endswith("/"):
            await RedirectResponse(f"{scope.get('root_path', '')}/")(scope, receive, send)
            return
        import anyio.to_thread

        app = await anyio.to_thread.run_sync(self._app)
        await app(scope, receive, send)

    async def authorized(self, scope: dict) -> bool:
        """The same test as Gradio's own routes: no login configured, or a valid session / dependency."""
        return await auth.allowed(auth.gradio_app(scope, self.blocks), Request(scope))


def routes(logdir: Path, blocks: Any = None) -> list[Mount]:
    """The routes to pass as ``launch(app_kwargs={"routes": routes(...)})``."""
    return [Mount(PREFIX, app=TensorBoardRoute(logdir, blocks))]
