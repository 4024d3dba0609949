"""Tell a chat channel when a run ends: an optional webhook (Slack- and Discord-style JSON).

    TUNEBOARD_WEBHOOK_URL=https://hooks.slack.com/services/... python app.py

The URL is a secret (anyone holding it can post to the channel), so it is read from the environment only:
it never enters a config, a log or a run directory. One POST per run end (finished, stopped, failed,
cancelled), whoever records the end -- the trainer, or the supervisor for a job that was killed; the body
carries ``text`` (Slack) and ``content`` (Discord) plus the run's fields for other receivers.
A webhook that fails is logged and otherwise ignored: it never changes what happens to the run.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from finetune import status as st

ENV = "TUNEBOARD_WEBHOOK_URL"
TIMEOUT_SECONDS = 5.0
log = logging.getLogger("tuneboard.notify")


def webhook_url() -> str | None:
    import os

    url = os.environ.get(ENV, "").strip()
    return url if urlsplit(url).scheme in ("http", "https") else None


def once(run_dir: str | Path, *, background: bool = True) -> bool:
    """Send the end of ``run_dir`` unless that was sent already; True if a message went (or is going)."""
    run_dir = Path(run_dir)
    url = webhook_url()
    if url is None:
        return False
    with st.locked(run_dir):
        current = st.read(run_dir)
        key = f"{current.get('attempt', 0)}:{current.get('state')}"
        if current.get("state") not in st.FINAL_STATES or current.get("notified") == key:
            return False
        st.write_json_atomic(run_dir / "status.json", current | {"notified": key})
    body = payload(run_dir.name, current)
    if background:
        threading.Thread(target=post, args=(url, body), daemon=True, name="tuneboard-webhook").start()
    else:
        post(url, body)
    return True


def payload(run_id: str, status: dict[str, Any]) -> dict[str, Any]:
    state = status.get("state", "?")
    step = f"step {status.get('step', 0)}/{status.get('max_steps', '?')}"
    loss = f", loss {status['loss']:.4f}" if isinstance(status.get("loss"), (int, float)) else ""
    reason = f": {status['reason']}" if status.get("reason") and state != st.FINISHED else ""
    text = f"Tuneboard run {run_id} {state} at {step}{loss}{reason}"
    fields = {k: status.get(k) for k in ("state", "step", "max_steps", "loss", "reason", "ended_at")}
    return {"text": text, "content": text[:2000], "username": "Tuneboard", "run": run_id, **fields}


def post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "Tuneboard"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            response.read(1024)
    except Exception as exc:  # noqa: BLE001 - a dead webhook must never hurt the run
        host = urlsplit(url).hostname  # never the whole URL: it is the secret
        log.warning("webhook to %s failed: %s", host, exc)
