"""One guard in front of every route of the dashboard's server: the login, and which files may be served.

    (installed by finetune/ui/__init__.py launch_kwargs; tested by tests/ui/test_security.py)

Gradio 6.31 checks the login on most routes but not all (``/gradio_api/heartbeat``, ``/gradio_api/cancel``,
``/gradio_api/stream/...``, ``/gradio_api/app_id`` and a dozen more answer anyone), and none of its checks
covers routes mounted beside it such as /tensorboard/. So this middleware refuses every request from someone
not signed in, except the login page and the static files that draw it: a route Gradio adds in a later
release stays closed until someone opens it here. It also limits ``/gradio_api/file=`` (every spelling
Gradio routes) to files inside the data directory, where app.py puts Gradio's cache, and never fetches a
URL for a client.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from finetune.ui import auth

# What the login page loads before anyone has signed in (seen in chromium): Gradio's bundle, theme, icon.
STATIC = re.compile(r"/(assets|static)/.*|/theme\.css|/favicon\.ico")
LOGIN_PAGE = {
    "password": re.compile(r"/|/login/?"),  # Gradio draws its login form at / until the cookie is set
    "huggingface": re.compile(r"/login/(huggingface|callback)"),
}
# launch() calls this on itself, without a cookie, before it returns; afterwards it only answers "false".
SELF_CALL = "/gradio_api/startup-events"
FILE_ROUTE = re.compile(r"/gradio_api/file(=|/)(?P<path>.*)", re.DOTALL)


class Gate:
    """ASGI middleware: sign-in for all but the login page; files only from inside ``home``."""

    def __init__(self, app: Any, home: Path, login: str = "none"):
        self.app = app
        self.home = Path(home).resolve()
        self.login = login
        self.public = LOGIN_PAGE.get(login)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path") or "") or "/"
        refusal = await self.refusal(scope, path)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)

    async def refusal(self, scope: dict, path: str) -> Any:
        """None to let the request through, else the response that refuses it."""
        if not self.is_public(scope, path) and not await auth.allowed(scope.get("app"), Request(scope)):
            if self.login == "huggingface" and scope.get("method") == "GET" and _wants_html(scope):
                return RedirectResponse(f"/login/huggingface?_target_url={quote(path)}", status_code=302)
            return JSONResponse({"detail": "Not authenticated: sign in first"}, status_code=401)
        match = FILE_ROUTE.fullmatch(path)
        if match and not self.servable(match["path"]):
            return JSONResponse({"detail": "File not allowed."}, status_code=403)
        return None

    def is_public(self, scope: dict, path: str) -> bool:
        if path == SELF_CALL:
            return auth.is_loopback((scope.get("client") or ("",))[0])
        return bool(STATIC.fullmatch(path) or (self.public and self.public.fullmatch(path)))

    def servable(self, requested: str) -> bool:
        """Only a file inside the data directory, by its written path and by where its links lead."""
        if re.match(r"[a-zA-Z][\w+.-]*:", requested):  # http:, https:, file:, data: ... never fetched
            return False
        written = Path(os.path.abspath(requested))  # how Gradio's file route reads it (relative to cwd)
        return written.is_relative_to(self.home) and written.resolve().is_relative_to(self.home)


def _wants_html(scope: dict) -> bool:
    return "text/html" in Request(scope).headers.get("accept", "")
