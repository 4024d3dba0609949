"""frames.js in the page's <head> (finetune/ui/head.py): written into GET / before Gradio's modules, and its
pattern still finds Gradio's status-tracker tick (an upgrade that changes it fails here, not silently).

.venv/bin/pytest tests/ui/test_head.py -q
"""

from __future__ import annotations

import re
from pathlib import Path

import gradio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from finetune.ui import head

ASSETS = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"


def test_the_pattern_finds_gradios_one_tracker_tick() -> None:
    pattern = re.search(r"const TICK = /(.*)/;", head.FRAMES_JS).group(1)
    sources = "".join(p.read_text(encoding="utf-8") for p in ASSETS.glob("statustracker-*.js"))
    callbacks = re.findall(r"\w+\((\(\)=>\{[^}]*\})\)", sources)
    tick = "()=>{F(Pe,(performance.now()-w(de))/1e3),W&&ze()}"
    assert [c for c in callbacks if re.fullmatch(pattern, c)] == [tick]


def page() -> HTMLResponse:
    return HTMLResponse("<!doctype html><html><head><title>t</title></head><body>hi</body></html>")


def client() -> TestClient:
    routes = [Route("/", lambda r: page()), Route("/x", lambda r: JSONResponse({"head": "<head>"}))]
    return TestClient(Starlette(routes=routes, middleware=[Middleware(head.HeadScript, script="window.s=1")]))


def test_the_script_comes_first_in_the_head_of_the_page_only() -> None:
    got = client().get("/")
    assert got.text.startswith("<!doctype html><html><head><script>window.s=1</script><title>")
    assert int(got.headers["content-length"]) == len(got.content)
    assert client().get("/x").json() == {"head": "<head>"}  # other routes untouched
