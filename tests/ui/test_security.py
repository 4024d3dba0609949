"""Secure by default, checked on the real ``app.py``: loopback only, a login on every route (TensorBoard's
too), files served only from the data directory, uploads limited and taken out of Gradio's cache.

    .venv/bin/pytest tests/ui/test_security.py -q       # ~40 s: two app.py processes start side by side

One app.py runs with a password login read from a TUNEBOARD_AUTH file, the other as a Hugging Face Space with
OAuth (a session cookie signed the way Gradio's SessionMiddleware signs it). The routes requested anonymously
are the routes of the FastAPI app Gradio builds with the same launch settings, walked from ``app.routes``.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import SPACE_OAUTH, free_port, session_cookie

from finetune.ui import dataset_tab
from finetune.uploads import UploadError
from ui.conftest import placeholder_page

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
STATIC = {"/assets/x", "/static/x", "/theme.css", "/favicon.ico"}
PUBLIC = {  # what each login leaves open: the login page and what draws it (finetune/ui/gate.py)
    "password": STATIC | {"/", "/login", "/login/", "/gradio_api/startup-events"},
    "huggingface": STATIC
    | {"/login/huggingface", "/login/callback", "/logout", "/gradio_api/startup-events"},
}


class App:
    """``python app.py`` in a subprocess, as a user starts it; no --host."""

    def __init__(self, tmp: Path, env: dict[str, str], *args: str):
        self.home, self.port = tmp / "home", free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "app.log"
        base = {k: v for k, v in os.environ.items() if k not in ("GRADIO_SERVER_NAME", "HF_TOKEN", "HF_HOME")}
        env = base | {"TUNEBOARD_HOME": str(self.home), "HF_HUB_OFFLINE": "1", **env}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "app.py", "--port", str(self.port), *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_up(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/theme.css", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError(f"app.py did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def secret_files(tmp: Path) -> dict[str, Path]:
    """A fake HF token in $HF_HOME and in ~/.cache/huggingface (HOME points at a folder of the test)."""
    files = {
        "hf_home": tmp / "hf-home" / "token",
        "user_cache": tmp / "user" / ".cache" / "huggingface" / "token",
    }
    for path in files.values():
        path.parent.mkdir(parents=True)
        path.write_text("hf_not_for_you\n")
    return files


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, tiny_llama: str):
    """The two real apps, started together; the tiny model is built first so they only read the cache."""
    password_tmp, space_tmp = tmp_path_factory.mktemp("password"), tmp_path_factory.mktemp("space")
    accounts = password_tmp / "accounts"
    accounts.write_text(f"# test accounts\nada:{PASSWORD}\n\nbob:other\n", encoding="utf-8")
    secrets = secret_files(password_tmp)
    password = App(
        password_tmp,
        {
            "TUNEBOARD_AUTH": str(accounts),
            "TUNEBOARD_MAX_UPLOAD_MB": "1",
            "HF_HOME": str(secrets["hf_home"].parent),
            "HOME": str(password_tmp / "user"),
        },
    )
    space = App(
        space_tmp,
        SPACE_OAUTH,
    )
    try:
        password.wait_up()
        space.wait_up()
        password.secrets = secrets
        yield {"password": password, "huggingface": space}
    finally:
        password.stop()
        space.stop()


@pytest.fixture(scope="module")
def ada(apps) -> httpx.Client:
    """A client signed in to the password app through its own login form."""
    with httpx.Client(base_url=apps["password"].url, timeout=60) as client:
        assert client.post("/login", data={"username": "ada", "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": "ada", "password": PASSWORD}).status_code == 200
        yield client


# ---- the route table ------------------------------------------------------------------------------


def walk(routes) -> list[tuple[str, str]]:
    """(method, path template) of every route, into Gradio's included /gradio_api router and mounts."""
    found = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += walk(inner.routes)
        elif hasattr(route, "methods") and route.methods:
            found += [(m, route.path) for m in sorted(route.methods)]
        elif hasattr(route, "app"):  # a Mount, such as /tensorboard
            found += [("GET", route.path + "/"), ("GET", route.path + "/data/runs")]
    return found


@pytest.fixture(scope="module")
def route_table(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """The routes of the server Gradio builds with the dashboard's launch settings (as app.py passes them)."""
    from finetune import ui

    home = tmp_path_factory.mktemp("routes-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))
        with placeholder_page(lambda demo: ui.launch_kwargs(home, demo)) as (demo, _):
            table = walk(demo.server_app.routes)
    paths = {path for _, path in table}
    assert {"/tensorboard/", "/gradio_api/upload", "/gradio_api/file={path_or_url:path}", "/"} <= paths
    assert len(table) > 60  # Gradio 6.31 has about 80; a broken walk would find a handful
    return table


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path.replace("{path_or_url:path}", "app.py"))


@pytest.mark.parametrize("login", ["password", "huggingface"])
def test_every_route_refuses_an_anonymous_request(apps, route_table, login: str) -> None:
    routes = set(route_table) | {
        ("GET", "/login/huggingface"),
        ("GET", "/login/callback"),
        ("GET", "/logout"),
    }
    opened = []
    with httpx.Client(base_url=apps[login].url, timeout=30) as client:
        for method, template in sorted(routes):
            path = concrete(template)
            if path in PUBLIC[login]:
                continue
            with client.stream(method, path) as response:  # status only: some routes stream forever
                if response.status_code != 401:
                    opened.append(f"{method} {path} -> {response.status_code}")
    assert opened == []
    assert len(routes) > 60


@pytest.mark.parametrize("login", ["password", "huggingface"])
def test_the_health_check_answers_anyone_and_says_nothing_else(apps, login: str) -> None:
    """The container's HEALTHCHECK (Dockerfile) asks /healthz without a login."""
    response = httpx.get(apps[login].url + "/healthz", timeout=30)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert httpx.post(apps[login].url + "/healthz", timeout=30).status_code == 401  # only a GET is public


def test_the_login_page_shows_nothing_of_the_dashboard(apps, ada) -> None:
    anonymous = httpx.get(apps["password"].url + "/", timeout=30)
    assert anonymous.status_code == 200 and '"auth_required":true' in anonymous.text.replace(" ", "")
    assert "tb-title" not in anonymous.text and "dataset.path" not in anonymous.text
    assert "tb-title" in ada.get("/").text  # the page itself, once signed in
    assert httpx.get(apps["password"].url + "/gradio_api/startup-events", timeout=30).json() is False


def test_password_login_opens_every_part(ada) -> None:
    assert ada.get("/config").status_code == 200
    assert ada.get("/gradio_api/info").status_code == 200
    tensorboard = ada.get("/tensorboard/")
    assert tensorboard.status_code == 200 and "TensorBoard" in tensorboard.text
    with httpx.Client(base_url=str(ada.base_url), timeout=30) as bob:
        assert bob.post("/login", data={"username": "bob", "password": "other"}).status_code == 200
        assert bob.get("/gradio_api/info").status_code == 200


def test_space_oauth_lets_in_only_the_listed_users(apps) -> None:
    url = apps["huggingface"].url
    assert "tb-title" in httpx.get(url + "/", cookies={"session": session_cookie("ada")}, timeout=30).text
    for cookie in (
        session_cookie("mallory"),  # signed in to Hugging Face, but not the Space's owner
        session_cookie("ada", expires_in=-60),
        session_cookie("ada", secret="guessed"),
    ):
        for path in ("/", "/config", "/tensorboard/", "/gradio_api/info"):
            assert httpx.get(url + path, cookies={"session": cookie}, timeout=30).status_code == 401, path
    tensorboard = httpx.get(url + "/tensorboard/", cookies={"session": session_cookie("ada")}, timeout=60)
    assert tensorboard.status_code == 200
    browser = httpx.get(url + "/", headers={"accept": "text/html"}, timeout=30)
    assert browser.status_code == 302 and browser.headers["location"].startswith("/login/huggingface")
    # Signed in but not listed: signing in again would only come back here, so the page says who and why.
    stranger = httpx.get(
        url + "/",
        headers={"accept": "text/html", "accept-language": "ja,en;q=0.8"},
        cookies={"session": session_cookie("mallory")},
        timeout=30,
    )
    assert (
        stranger.status_code == 403 and "mallory" in stranger.text and "TUNEBOARD_HF_USERS" in stranger.text
    )
    assert "サインアウト" in stranger.text and "href='/logout'" in stranger.text
    assert "tb-title" not in stranger.text
    signed_out = httpx.get(url + "/logout", cookies={"session": session_cookie("mallory")}, timeout=30)
    assert signed_out.status_code in (302, 307) and "session=null" in signed_out.headers.get("set-cookie", "")


# ---- files ----------------------------------------------------------------------------------------


def raw_get(base: str, path: str, cookies: httpx.Cookies | None = None) -> tuple[int, bytes]:
    """GET ``path`` byte for byte: httpx would resolve ``..`` before sending it."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    header = "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())
    conn.request("GET", path, headers={"Cookie": header} if header else {})
    response = conn.getresponse()
    return response.status, response.read()


def file_spellings(target: str) -> list[str]:
    """Every way Gradio 6.31 routes a file request, plus encodings and older spellings."""
    quoted = target.replace("/", "%2F")
    return [
        f"/gradio_api/file={target}",
        f"/gradio_api/file={quoted}",
        f"/gradio_api/file/{target}",
        f"/gradio_api/file/{quoted}",
        f"/file={target}",
        f"/file/{target}",
        f"/gradio_api/file=file://{target}",
    ]


def test_files_outside_the_data_directory_are_refused(apps, ada) -> None:
    app = apps["password"]
    cache = app.home / ".gradio-cache"
    (cache / "served").mkdir(parents=True, exist_ok=True)
    (cache / "served" / "ok.txt").write_text("inside")
    (cache / "served" / "link.txt").symlink_to("/etc/passwd")
    assert ada.get(f"/gradio_api/file={cache}/served/ok.txt").text == "inside"  # the route itself works
    targets = [
        "/etc/passwd",
        str(app.secrets["hf_home"]),
        str(app.secrets["user_cache"]),
        str(ROOT / "app.py"),
        "app.py",  # relative to the app's working directory: the project
        "../../../../../../etc/passwd",
        f"{cache}/../../../../../../etc/passwd",
        f"{cache}/served/link.txt",
        f"{app.home}/uploads/../../accounts",
    ]
    leaks = []
    for target in targets:
        for path in file_spellings(target):
            status, body = raw_get(app.url, path, ada.cookies)
            if status < 400 or b"root:" in body or b"hf_not_for_you" in body or b"import" in body:
                leaks.append(f"{path} -> {status}")
    assert leaks == []


def test_files_are_refused_without_a_login_too(tmp_path: Path) -> None:
    """The default, no login, on loopback: the same limits, the URL fetch refused."""
    from finetune import ui

    home = tmp_path / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))
        with placeholder_page(lambda demo: ui.launch_kwargs(home, demo)) as (_, base):
            for target in ("/etc/passwd", str(ROOT / "app.py"), "app.py", "https://example.com/"):
                for path in file_spellings(target):
                    assert raw_get(base, path)[0] in (403, 404), path
            assert httpx.get(base + "/tensorboard/data/runs", timeout=60).status_code == 200
            assert httpx.get(base + "/openapi.json", timeout=30).status_code == 404


# ---- uploads --------------------------------------------------------------------------------------


def test_uploads_over_the_limit_are_refused_by_the_server(ada) -> None:
    # TUNEBOARD_MAX_UPLOAD_MB=1 for this app; the default 200 MB (or a 1 GB file) is refused the same way.
    big = b"a,b\n" + b"1,2\n" * (300 * 1024)  # 1.2 MB
    assert ada.post("/gradio_api/upload", files={"files": ("big.csv", big)}).status_code == 413
    small = ada.post("/gradio_api/upload", files={"files": ("small.csv", b"a,b\n1,2\n")})
    assert small.status_code == 200


def test_store_upload_takes_the_file_out_of_gradios_cache(tmp_path: Path, monkeypatch) -> None:
    cache, home = tmp_path / "cache", tmp_path / "home"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    good, bad = cache / "h1" / "サポート.csv", cache / "h2" / "tool.csv"
    for path, content in ((good, b"q,a\n1,2\n"), (bad, b"\x7fELF\x02\x01\x01\x00")):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    stored = Path(dataset_tab.store_upload(home, str(good)))
    assert stored.parent == (home / "uploads").resolve() and stored.name.endswith("-サポート.csv")
    with pytest.raises(UploadError, match="a Linux executable"):
        dataset_tab.store_upload(home, str(bad))
    assert list(cache.iterdir()) == []  # both cached copies and their folders are gone


# ---- binding and warnings -------------------------------------------------------------------------


def listeners(port: int) -> list[str]:
    """Local addresses listening on ``port``, from /proc/net/tcp and tcp6 (hex, as the kernel writes them)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def outward_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_default_bind_is_loopback_only(apps) -> None:
    port = apps["password"].port
    assert listeners(port) == ["0100007F"]  # 127.0.0.1, and nothing on IPv6
    address = outward_address()
    if address is not None:
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=3):
            pass


@pytest.mark.parametrize(
    "args, expected",
    [(["--host", "0.0.0.0"], "--host 0.0.0.0 without a login"), (["--share"], "--share")],
)
def test_open_host_without_login_warns(tmp_path: Path, args: list[str], expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEBOARD_AUTH", "SPACE_ID", "OAUTH_CLIENT_ID")}
    env["TUNEBOARD_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(free_port()), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # printed before the page is built, so before anything listens
    finally:
        proc.kill()
        proc.wait()
    assert line.startswith("WARNING:") and expected in line and "TUNEBOARD_AUTH" in line


def test_a_container_without_a_login_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNEBOARD_AUTH", "SPACE_ID", "OAUTH_CLIENT_ID")}
    env |= {"TUNEBOARD_HOME": str(tmp_path), "TUNEBOARD_CONTAINER": "1"}  # as the Dockerfile sets it
    argv = [sys.executable, "app.py", "--host", "0.0.0.0", "--port", str(free_port())]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "from a container without a login" in out.stderr
    assert "TUNEBOARD_AUTH" in out.stderr and "TUNEBOARD_PRIVATE_NETWORK=1" in out.stderr
    env["TUNEBOARD_PRIVATE_NETWORK"] = "1"  # told the port is private: it starts, with the usual warning
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
    assert line.startswith("WARNING:") and "without a login" in line


def test_bad_auth_setting_stops_startup(tmp_path: Path) -> None:
    env = os.environ | {"TUNEBOARD_HOME": str(tmp_path), "TUNEBOARD_AUTH": "ada:s3cret,bob"}
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "TUNEBOARD_AUTH entry 2: expected user:password" in out.stderr and "s3cret" not in out.stderr


# ---- in a browser ---------------------------------------------------------------------------------


def test_login_then_a_refused_upload_is_explained_next_to_the_field(apps, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    fake = tmp_path / "report.csv"
    fake.write_bytes(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00")  # a Windows program named .csv
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(apps["password"].url)
        page.get_by_label("username").fill("ada")
        page.get_by_label("password").fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#tb-title")).to_be_visible(timeout=60_000)
        page.get_by_label("Upload a file").check()
        page.locator("#tb-upload input[type=file]").set_input_files(str(fake))
        refused = page.locator("#tb-upload-refused")
        expect(refused).to_contain_text("a Windows executable", timeout=60_000)  # busy machine: slow upload
        expect(page.get_by_label("Data path or id")).to_have_value("builtin:sample-chat")
        browser.close()
    cache = apps["password"].home / ".gradio-cache"
    assert not list(cache.rglob("report.csv"))
