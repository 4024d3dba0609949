"""The app starts on a busy machine: Gradio's own check that it can reach itself, one HEAD / with a 3 s
timeout that ends launch() when it times out, is off in the dashboard's launch settings (finetune/ui
launch_kwargs); /healthz answers whether the app is up.

.venv/bin/pytest tests/ui/test_startup.py -q
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware

from ui.conftest import placeholder_page


class SlowFirstPage:
    """ASGI middleware: ``HEAD /`` answers after 4 s, as a server busy beside a CPU training run may."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "HEAD" and scope.get("path") == "/":
            await asyncio.sleep(4)
        await self.app(scope, receive, send)


def test_a_slow_first_answer_does_not_end_the_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from finetune import ui

    home = tmp_path / "home"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))

    def settings(demo: Any) -> dict[str, Any]:
        kwargs = ui.launch_kwargs(home, demo)
        kwargs["app_kwargs"]["middleware"].append(Middleware(SlowFirstPage))
        return kwargs

    with placeholder_page(settings) as (_, url):
        assert httpx.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
    with pytest.raises(ValueError, match="localhost is not accessible"):  # Gradio's own check would end it
        with placeholder_page(lambda demo: settings(demo) | {"_frontend": True}):
            pass
