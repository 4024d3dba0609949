"""TensorBoard served by the dashboard's own server under /tensorboard/, behind the page's login.

.venv/bin/pytest tests/ui/test_tensorboard.py -q
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from finetune.ui import tensorboard
from ui.conftest import route_pages


@pytest.fixture
def serve(tmp_path: Path):
    """``serve(**launch)``: a page with the TensorBoard route (and only it) mounted; returns its URL."""
    with route_pages(lambda demo: tensorboard.routes(tmp_path / "runs", demo)) as start:
        yield start


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
