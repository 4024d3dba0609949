"""One guard in front of every route of the dashboard's server: the login, and which files may be served.

    (installed by finetune/ui/__init__.py launch_kwargs; tested by tests/ui/test_security.py and
    tests/ui/test_login_throttle.py)

Gradio 6.31 checks the login on most routes but not all (``/gradio_api/heartbeat``, ``/gradio_api/cancel``,
``/gradio_api/stream/...``, ``/gradio_api/app_id`` and a dozen more answer anyone), and none of its checks
covers routes mounted beside it such as /tensorboard/. So this middleware refuses every request from someone
not signed in, except the login page and the static files that draw it: a route Gradio adds in a later
release stays closed until someone opens it here. It also limits ``/gradio_api/file=`` (every spelling
Gradio routes) to files inside the data directory, where app.py puts Gradio's cache, and never fetches a
URL for a client.

With the password login it also slows down guessing: POST /login goes through finetune/ui/throttle.py, which
answers 429 while the client or the account must wait, before Gradio checks the password.
"""

from __future__ import annotations

import html
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from finetune.ui import auth, i18n
from finetune.ui.throttle import Throttle, keys_for, retry_after

# What the login page loads before anyone has signed in (seen in chromium): Gradio's bundle, theme, icon.
STATIC = re.compile(r"/(assets|static)/.*|/theme\.css|/favicon\.ico")
LOGIN_PAGE = {
    "password": re.compile(r"/|/login/?"),  # Gradio draws its login form at / until the cookie is set
    "huggingface": re.compile(r"/login/(huggingface|callback)|/logout"),  # /logout only ends the session
}
# launch() calls this on itself, without a cookie, before it returns; afterwards it only answers "false".
SELF_CALL = "/gradio_api/startup-events"
FILE_ROUTE = re.compile(r"/gradio_api/file(=|/)(?P<path>.*)", re.DOTALL)
SIGN_IN = re.compile(r"/login/?")  # Gradio's password check, POST with form fields username and password
SIGN_IN_MAX_BYTES = 16 * 1024  # Gradio's own form sends about 300 bytes
HEALTH = "/healthz"  # the container's HEALTHCHECK: answered here, before any login, and it says only "ok"
log = logging.getLogger("tuneboard.auth")


class Gate:
    """ASGI middleware: sign-in for all but the login page; files only from inside ``home``."""

    def __init__(self, app: Any, home: Path, login: str = "none", throttle: Throttle | None = None):
        self.app = app
        self.home = Path(home).resolve()
        self.login = login
        self.public = LOGIN_PAGE.get(login)
        self.throttle = (throttle or Throttle()) if login == "password" else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path") or "") or "/"
        if scope["type"] == "http" and path == HEALTH and scope.get("method") in ("GET", "HEAD"):
            await JSONResponse({"status": "ok"})(scope, receive, send)
            return
        refusal = await self.refusal(scope, path)
        if refusal is None and self.is_sign_in(scope, path):
            await self.sign_in(scope, receive, send)
        elif refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)

    async def refusal(self, scope: dict, path: str) -> Any:
        """None to let the request through, else the response that refuses it."""
        if not self.is_public(scope, path) and not await auth.allowed(scope.get("app"), Request(scope)):
            if self.login == "huggingface" and scope.get("method") == "GET" and _wants_html(scope):
                if name := auth.hf_name(Request(scope)):  # signing in again would only loop back here
                    return _not_on_the_list(name, Request(scope).headers.get("accept-language"))
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

    def is_sign_in(self, scope: dict, path: str) -> bool:
        return bool(self.throttle and scope.get("method") == "POST" and SIGN_IN.fullmatch(path))

    async def sign_in(self, scope: dict, receive: Any, send: Any) -> None:
        """POST /login through the throttle: refused while the client or the account must wait, else passed
        on to Gradio with its answer recorded (200 clears both keys; anything else stays a failure)."""
        body = await _read_body(receive, SIGN_IN_MAX_BYTES)
        if body is None:
            await JSONResponse({"detail": "Sign-in form too large."}, status_code=413)(scope, receive, send)
            return
        client = _client(scope)
        user = await _form_text(scope, body, "username")
        keys = keys_for(client, user)
        wait = self.throttle.attempt(keys)
        if wait:
            seconds = retry_after(wait)
            log.warning("sign-in refused: user %r from %s must wait %d s", user, client, seconds)
            await _too_many(seconds)(scope, receive, send)
            return
        status = await _run_observed(self.app, scope, _replay(body, receive), send)
        if status == 200:
            self.throttle.succeeded(keys)
            return
        tries = self.throttle.attempts(keys[0])
        log.warning("sign-in failed: user %r from %s (HTTP %s, %d in a row)", user, client, status, tries)

    def servable(self, requested: str) -> bool:
        """Only a file inside the data directory, by its written path and by where its links lead."""
        if re.match(r"[a-zA-Z][\w+.-]*:", requested):  # http:, https:, file:, data: ... never fetched
            return False
        written = Path(os.path.abspath(requested))  # how Gradio's file route reads it (relative to cwd)
        return written.is_relative_to(self.home) and written.resolve().is_relative_to(self.home)


def _not_on_the_list(name: str, accept_language: str | None) -> HTMLResponse:
    """403 for someone signed in to Hugging Face whom this Space does not let in: who, why, and a way out."""
    lang = i18n.pick_lang(None, accept_language)
    text = html.escape(i18n.t(lang, "app.not_allowed", user=name))
    sign_out = html.escape(i18n.t(lang, "app.sign_out"))
    head = "<!doctype html><meta charset='utf-8'><title>Tuneboard</title>"
    body = f"{head}<p>{text}</p><p><a href='/logout'>{sign_out}</a></p>"
    return HTMLResponse(body, status_code=403)


def _wants_html(scope: dict) -> bool:
    return "text/html" in Request(scope).headers.get("accept", "")


def _client(scope: dict) -> str:
    """The peer's address. X-Forwarded-For is never read here: anyone can write it, and trusting it would
    give every guess a fresh address. (Uvicorn, as Gradio 6.31 starts it, puts that header's address in
    scope["client"] only when the peer is in FORWARDED_ALLOW_IPS, by default this machine: a local proxy.)
    Behind a proxy that sends none, every visitor shares its address; the account key still holds."""
    return (scope.get("client") or ("unknown",))[0]


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body; None when it passes ``limit`` bytes or the client leaves before the end."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return body


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that first hands over ``body`` (already read), then whatever the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


async def _form_text(scope: dict, body: bytes, name: str) -> str:
    """A text field of the form, read by the parser FastAPI gives Gradio, so both see the same name
    (urlencoded, or multipart as Gradio's own login page sends it); "" when absent or malformed."""
    try:
        form = await Request(scope, _replay(body, _nothing)).form()
    except (HTTPException, MultiPartException):
        return ""  # Gradio refuses it too; the client's key still counts the attempt
    value = form.get(name)
    await form.close()
    return value if isinstance(value, str) else ""


async def _nothing() -> dict:
    return {"type": "http.disconnect"}


async def _run_observed(app: Any, scope: dict, receive: Any, send: Any) -> int | None:
    """Run ``app`` and return the status it answered with (None when it started no response)."""
    status = None

    async def observe(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    await app(scope, receive, observe)
    return status


def _too_many(seconds: int) -> JSONResponse:
    detail = f"Too many failed sign-ins: try again in {seconds} s."
    headers = {"Retry-After": str(seconds)}
    return JSONResponse({"detail": detail, "retry_after": seconds}, status_code=429, headers=headers)
