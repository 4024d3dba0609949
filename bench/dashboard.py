"""Variant (c) of bench/run.py: the same config started from the running dashboard, as a user would.

    (imported by bench/run.py; needs Debian's chromium at /usr/bin/chromium, playwright and cryptography)

``python app.py`` starts over a fresh TUNEBOARD_HOME; its cold start is the time until "/" answers 200.
The config reaches the form the way the page itself restores a form after a reload: the page keeps its form
in the browser's localStorage (a gr.BrowserState, "tuneboard-form"), which Gradio encrypts with a secret the
page's /config carries, with CryptoJS's AES in its OpenSSL passphrase format; :func:`browser_state_value`
writes that format, and the value goes into localStorage before the page's scripts run. The page loads the
form and checks it (the bench waits for "N training records"); the app's RSS then is its idle figure. The
bench clicks Start (#tb-start) and keeps the page open on the Run section while the run trains, as someone
watching it would. Meanwhile the app process's VmRSS is read from /proc every 0.25 s, and the CPU time of
the app and of the browser (playwright's driver and chromium) is taken over the same span. The page has no
field for ``after.stop_check``, so once training has ended the bench sends the trainer SIGTERM, which ends
its stop check after the batch of prompts it is answering, and SIGKILL if it is still there after a grace
period: nothing after training is measured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FORM_KEY = "tuneboard-form"
COUNTS_FILE = "bench_batches.json"  # written by bench/hook/sitecustomize.py
MB = 1024  # /proc reports KiB


def missing() -> str | None:
    """Why variant (c) cannot run here (None when it can)."""
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (make browser installs it)"
    for module in ("playwright", "cryptography"):
        try:
            __import__(module)
        except ImportError:
            return f"the {module} package is not installed (make setup-dev)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path, env: dict[str, str], timeout: float = 180.0) -> tuple[subprocess.Popen, str, float]:
    """``python app.py`` over ``home``; returns (process, url, seconds until "/" answered 200)."""
    home.mkdir(parents=True, exist_ok=True)
    port, started = free_port(), time.monotonic()
    with (home.parent / f"{home.name}-app.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=env | {"TUNEBOARD_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, url, time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"app.py did not serve {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def form_secret(url: str) -> str:
    """The secret the page encrypts its stored form with (a prop of the BrowserState in /config)."""
    with urllib.request.urlopen(url + "config", timeout=30) as response:
        config = json.load(response)
    for component in config["components"]:
        props = component.get("props") or {}
        if component.get("type") == "browserstate" and props.get("storage_key") == FORM_KEY:
            return props["secret"]
    raise RuntimeError(f"the page has no BrowserState {FORM_KEY!r}: has the page changed?")


def browser_state_value(value: Any, secret: str) -> str:
    """``value`` as Gradio 6's BrowserState stores it: base64(16 random bytes) ":" CryptoJS.AES.encrypt(
    JSON, SHA256(secret) as hex), i.e. OpenSSL's "Salted__" format (EVP_BytesToKey with MD5, AES-256-CBC)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    passphrase = hashlib.sha256(secret.encode()).hexdigest().encode()
    salt, derived, block = os.urandom(8), b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase + salt).digest()
        derived += block
    padder = padding.PKCS7(128).padder()
    data = padder.update(json.dumps(value).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(derived[:32]), modes.CBC(derived[32:48])).encryptor()
    body = encryptor.update(data) + encryptor.finalize()
    openssl = base64.b64encode(b"Salted__" + salt + body).decode()
    return base64.b64encode(os.urandom(16)).decode() + ":" + openssl


def proc_kb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(rf"^{field}:\s+(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from the parent field of /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def browser_pids(app_pid: int) -> set[int]:
    """This process's children and theirs, but the app and its runs: playwright's driver and chromium."""
    return descendants(os.getpid()) - descendants(app_pid) - {app_pid}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child the app has not reaped yet is a zombie: not running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def new_run(runs_root: Path, timeout: float) -> Path:
    """The run directory Start created (the only one in a fresh data directory)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in runs_root.glob("*") if p.is_dir() and not p.name.startswith(".")]
        if found and (found[0] / "status.json").is_file():
            return found[0]
        time.sleep(0.1)
    raise RuntimeError(f"no run appeared in {runs_root} within {timeout:.0f} s of Start")


def watch_training(app_pid: int, run_dir: Path, timeout: float) -> dict[str, Any]:
    """The app's VmRSS until the trainer's hook says training ended; the CPU of the app, of the browser and
    of the app's other processes (helper_pids)."""
    rss: list[int] = []
    browser, helpers = browser_pids(app_pid), helper_pids(app_pid, run_dir, timeout)
    cpu0, browser0, t0 = cpu_seconds(app_pid), sum(map(cpu_seconds, browser)), time.monotonic()
    helpers0 = sum(map(cpu_seconds, helpers))
    deadline = t0 + timeout
    while "train_end_at" not in read_json(run_dir / COUNTS_FILE):
        status = read_json(run_dir / "status.json")
        if status.get("state") in ("failed", "stopped", "cancelled"):
            raise RuntimeError(f"the dashboard's run {status.get('state')}: {status.get('reason')}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard's run did not finish training within {timeout:.0f} s")
        rss.append(proc_kb(app_pid, "VmRSS"))
        time.sleep(0.25)
    wall = max(time.monotonic() - t0, 1e-9)
    return {
        "app_rss_max_mb": max(rss, default=0) / MB,
        "app_rss_mean_mb": sum(rss) / max(len(rss), 1) / MB,
        **memory_kinds(app_pid),
        "app_cpu_share": (cpu_seconds(app_pid) - cpu0) / wall,  # of one core
        "browser_cpu_share": (sum(map(cpu_seconds, browser)) - browser0) / wall,
        "helpers_cpu_share": (sum(map(cpu_seconds, helpers)) - helpers0) / wall,  # the analysis process
    }


def helper_pids(app_pid: int, run_dir: Path, timeout: float) -> set[int]:
    """The app's other children, its run's process tree aside (the analysis process, finetune/analyst.py),
    once the run has its process."""
    deadline = time.monotonic() + timeout
    while not (run_pid := int(read_json(run_dir / "status.json").get("pid") or 0)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard's run had no process within {timeout:.0f} s")
        time.sleep(0.1)
    return descendants(app_pid) - {run_pid} - descendants(run_pid)


def memory_kinds(pid: int) -> dict[str, float]:
    """What the app's resident memory is, once training has ended (MB): its own (anonymous) pages, the
    pages of files (the libraries' code, shared with the trainer that maps the same files) and its
    proportional share (PSS: a page shared by n processes counts 1/n)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    kb = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE)}
    return {
        "app_anon_mb": kb.get("Anonymous", 0) / MB,
        "app_file_mb": (kb.get("Rss", 0) - kb.get("Anonymous", 0)) / MB,
        "app_pss_mb": kb.get("Pss", 0) / MB,
    }


def end_run(run_dir: Path, grace: float) -> None:
    """Training has ended: SIGTERM the trainer (which cuts its stop check short at the next batch of prompts)
    and wait ``grace`` seconds for it to exit, then SIGKILL it (the bench needs nothing more from it)."""
    pid = read_json(run_dir / "status.json").get("pid")
    if not pid:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and alive(int(pid)):
            time.sleep(0.2)


PAGE_TIMEOUT_S = 240.0  # for the page to load and check the form (the run's own timeout is the caller's)
_OPEN: list[tuple[Any, Any]] = []  # the playwright driver and the browser of the page left open


def open_page(url: str, form: dict[str, Any], records: int, shot: Path) -> Any:
    """The page with ``form`` stored in localStorage, once it has loaded and checked it ("N training
    records"), on the Run section. The browser stays open until :func:`close_browser`; if the page never
    gets there, a screenshot goes to ``shot``."""
    from playwright.sync_api import expect, sync_playwright

    stored = browser_state_value(form, form_secret(url))
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    _OPEN.append((pw, browser))
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    context.add_init_script(f"window.localStorage.setItem({FORM_KEY!r}, {json.dumps(stored)});")
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_S * 1000)
    page.goto(url)
    checked = page.get_by_text(re.compile(rf"\b(?:{records}|{records:,}) training records"))
    try:
        expect(checked).to_be_visible(timeout=PAGE_TIMEOUT_S * 1000)
    except AssertionError:
        page.screenshot(path=str(shot), full_page=True)
        raise RuntimeError(f"the page never showed {records} training records; see {shot}") from None
    page.locator("#tb-tab-run-button").click()
    return page


def close_browser() -> None:
    while _OPEN:
        pw, browser = _OPEN.pop()
        browser.close()
        pw.stop()


def run(
    form: dict[str, Any], records: int, home: Path, env: dict[str, str], *, timeout: float, grace: float
) -> dict[str, Any]:
    """One dashboard run: start the app, Start the config from the page, measure; stop everything."""
    proc, url, cold = start_app(home, env)
    try:
        page = open_page(url, form, records, home.parent / f"{home.name}-page.png")
        idle = proc_kb(proc.pid, "VmRSS") / MB  # the page loaded and its form checked, before Start
        clicked = time.time()
        page.locator("#tb-start").click()
        run_dir = new_run(home / "runs", timeout=120)
        watched = watch_training(proc.pid, run_dir, timeout)
        end_run(run_dir, grace)
    finally:
        close_browser()
        stop(proc)
    return {
        "run_dir": run_dir,
        "started_at": clicked,
        "cold_start_s": cold,
        "app_idle_rss_mb": idle,
        **watched,
    }
