"""TensorBoard served by the dashboard's own server under /tensorboard/, behind the page's login.

.venv/bin/pytest tests/ui/test_tensorboard.py -q
"""

from __future__ import annotations

import socket
from pathlib import Path

import gradio as gr
import httpx
import pytest

from finetune.ui import tensorboard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path: Path):
    started = []

    def start(**launch) -> str:
        with gr.Blocks() as demo:
            gr.Markdown("page")
        port = free_port()
        demo.launch(
            server_name="127.0.0.1",
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            app_kwargs={"routes": tensorboard.routes(tmp_path / "runs", demo)},
            **launch,
        )
        started.append(demo)
        return f"http://127.0.0.1:{port}"

    yield start
    for demo in started:
        demo.close()


def test_served_on_the_same_port(serve) -> None:
    url = serve()
    page = httpx.get(f"{url}/tensorboard/", timeout=60)
    assert page.status_code == 200 and "<title>TensorBoard</title>" in page.text
    runs = httpx.get(f"{url}/tensorboard/data/runs", timeout=60)
    assert runs.status_code == 200 and runs.json() == []
    assert httpx.get(f"{url}/tensorboard", timeout=60, follow_redirects=True).status_code == 200


def test_behind_the_same_login_as_the_page(serve) -> None:
    url = serve(auth=("ada", "lovelace"))
    assert httpx.get(f"{url}/tensorboard/", timeout=60).status_code == 401
    assert httpx.get(f"{url}/tensorboard/data/runs", timeout=60).status_code == 401
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/login", data={"username": "ada", "password": "wrong"}).status_code != 200
        assert client.get("/tensorboard/").status_code == 401
        assert client.post("/login", data={"username": "ada", "password": "lovelace"}).status_code == 200
        page = client.get("/tensorboard/")
        assert page.status_code == 200 and "TensorBoard" in page.text


def test_refuses_when_it_cannot_tell() -> None:
    route = tensorboard.TensorBoardRoute(Path("/nonexistent"), blocks=None)
    import asyncio

    assert asyncio.run(route.authorized({"type": "http", "app": object(), "headers": []})) is False
