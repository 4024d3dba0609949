"""A script that must run in the page's <head> before Gradio's own modules (frames.js, the status trackers'
frame rate). ``launch(head=...)`` is no use for it: Gradio 6.31 puts that text into the page with its own
script after the app has started, when the trackers have already kept their reference to the browser's
``requestAnimationFrame``. So this ASGI middleware writes the script into the HTML of ``GET /`` itself.

    (installed by finetune/ui/__init__.py launch_kwargs; tested by tests/ui/test_head.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FRAMES_JS = (Path(__file__).resolve().parent / "frames.js").read_text(encoding="utf-8")


class HeadScript:
    """ASGI middleware: ``script`` first in the <head> of the HTML that ``GET /`` answers."""

    def __init__(self, app: Any, script: str = FRAMES_JS):
        self.app = app
        self.tag = f"<script>{script}</script>".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "").removeprefix(scope.get("root_path") or "") or "/"
        if scope["type"] != "http" or scope.get("method") != "GET" or path != "/":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body: list[bytes] = []

        async def held(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and _is_html(message):
                start = message  # held until the whole body is in: its length changes
            elif start is None or message["type"] != "http.response.body":
                await send(message)
            else:
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    page = _insert(b"".join(body), self.tag)
                    await send({**start, "headers": _with_length(start["headers"], len(page))})
                    await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, held)


def _is_html(start: dict) -> bool:
    headers = dict(start.get("headers") or [])
    return headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers


def _insert(page: bytes, tag: bytes) -> bytes:
    at = page.find(b"<head>")
    return page if at < 0 else page[: at + 6] + tag + page[at + 6 :]


def _with_length(headers: list, length: int) -> list:
    return [(k, v) for k, v in headers if k.lower() != b"content-length"] + [
        (b"content-length", str(length).encode())
    ]
