"""Failed sign-ins slow down per client and per account: the tracker on a hand-wound clock, then POST /login
through a real server with the dashboard's gate.

    .venv/bin/pytest tests/ui/test_login_throttle.py -q      # ~5 s
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.middleware import Middleware

from finetune.ui import auth, gate
from finetune.ui.throttle import Throttle, keys_for, retry_after
from ui.conftest import placeholder_page


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_free_attempts_then_waits_that_double_up_to_the_cap(clock: Clock) -> None:
    limits = Throttle(free=5, first_wait=1.0, max_wait=300.0, forget_after=900.0, clock=clock)
    ada = keys_for("10.0.0.1", "ada")
    assert [limits.attempt(ada) for _ in range(5)] == [0.0] * 5
    waits = []
    for _ in range(12):
        wait = limits.attempt(ada)
        waits.append(wait)
        clock.now += wait
        assert limits.attempt(ada) == 0.0  # let in once the wait is over (and counted)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_refused_attempts_do_not_lengthen_the_wait(clock: Clock) -> None:
    limits = Throttle(free=2, first_wait=1.0, clock=clock)
    ada = keys_for("10.0.0.1", "ada")
    limits.attempt(ada), limits.attempt(ada)
    for _ in range(50):
        assert limits.attempt(ada) == 1.0
    clock.now += 0.25
    assert limits.attempt(ada) == 0.75
    assert limits.attempts(ada[0]) == 2


def test_a_success_clears_the_client_and_the_account(clock: Clock) -> None:
    limits = Throttle(free=1, clock=clock)
    limits.attempt(keys_for("10.0.0.1", "ada"))
    assert limits.attempt(keys_for("10.0.0.1", "ada")) > 0
    limits.succeeded(keys_for("10.0.0.1", "ada"))
    assert limits.attempt(keys_for("10.0.0.1", "ada")) == 0.0


def test_the_client_and_the_account_are_each_slowed(clock: Clock) -> None:
    limits = Throttle(free=3, first_wait=1.0, clock=clock)
    for _ in range(3):
        limits.attempt(keys_for("10.0.0.1", "ada"))
    assert limits.attempt(keys_for("10.0.0.2", " ADA")) == 1.0  # the account, as Gradio strips its name
    assert limits.attempt(keys_for("10.0.0.1", "bob")) == 1.0  # the client, whatever name it tries next
    assert limits.attempt(keys_for("10.0.0.2", "bob")) == 0.0


def test_keys_are_forgotten_after_a_quiet_spell(clock: Clock) -> None:
    limits = Throttle(free=4, first_wait=60.0, forget_after=900.0, clock=clock)
    for _ in range(4):
        limits.attempt(keys_for("10.0.0.1", "ada"))
    clock.now += 899.0
    assert limits.attempts(("user", "ada")) == 4
    clock.now += 1.0
    assert limits.attempts(("user", "ada")) == 0
    assert [limits.attempt(keys_for("10.0.0.1", "ada")) for _ in range(4)] == [0.0] * 4


def test_memory_is_bounded_by_dropping_the_key_tried_least_recently(clock: Clock) -> None:
    limits = Throttle(max_keys=4, clock=clock)
    for i in range(10):
        clock.now += 1
        limits.attempt([("client", f"10.0.0.{i}")])
    assert [limits.attempts(("client", f"10.0.0.{i}")) for i in range(10)] == [0] * 6 + [1] * 4


def test_parallel_attempts_are_all_counted() -> None:
    limits = Throttle(free=10**6)
    key = [("user", "ada")]

    def guess() -> None:
        for _ in range(2000):
            limits.attempt(key)

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limits.attempts(key[0]) == 16_000


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 299.5)] == [1, 1, 2, 300]


# ---- through a real server ------------------------------------------------------------------------


def serve(home: Path, limits: Throttle):
    """The dashboard's launch settings for ada:pw, with the gate's throttle swapped for ``limits``."""
    from finetune import ui

    login = auth.Login("password", {"auth": auth.password_check({"ada": "pw", "bob": "other"})})

    def settings(demo):
        kwargs = ui.launch_kwargs(home, demo, login)
        stack = kwargs["app_kwargs"]["middleware"]
        at = next(i for i, layer in enumerate(stack) if layer.cls is gate.Gate)
        stack[at] = Middleware(gate.Gate, **stack[at].kwargs, throttle=limits)
        return kwargs

    return placeholder_page(settings)


def client_from(base: str, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z reaches the loopback server)."""
    return httpx.Client(base_url=base, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def test_wrong_passwords_get_429_until_the_wait_is_over(tmp_path: Path, monkeypatch, caplog) -> None:
    from finetune import ui

    home = tmp_path / "home"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))
    caplog.set_level(logging.WARNING, logger="tuneboard.auth")
    with serve(home, Throttle(free=3, first_wait=1.0)) as (_, base), client_from(base, "127.0.0.1") as me:
        answers = [me.post("/login", data={"username": "ada", "password": "guess"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [400, 400, 400, 429]
        refused = answers[-1]
        assert refused.headers["retry-after"] == "1" and refused.json()["retry_after"] == 1
        assert "try again in 1 s" in refused.json()["detail"]
        started = time.monotonic()
        assert me.post("/login", data={"username": "ada", "password": "pw"}).status_code == 429
        assert me.post("/login/", data={"username": "bob", "password": "other"}).status_code == 429
        time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
        assert me.post("/login", data={"username": "ada", "password": "pw"}).status_code == 200
        assert me.get("/config").status_code == 200  # signed in
        assert me.post("/login", data={"username": "ada", "password": "guess"}).status_code == 400  # cleared
    logged = [r.getMessage() for r in caplog.records if r.name == "tuneboard.auth"]
    assert "sign-in failed: user 'ada' from 127.0.0.1 (HTTP 400, 1 in a row)" in logged
    assert any(m.startswith("sign-in refused: user 'bob' from 127.0.0.1 must wait") for m in logged)
    assert not any("guess" in m for m in logged)  # the password never


def test_guesses_from_elsewhere_slow_the_account_not_its_owner_for_good(tmp_path: Path, monkeypatch) -> None:
    from finetune import ui

    home = tmp_path / "home"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(ui.cache_dir(home)))
    with (
        serve(home, Throttle(free=2, first_wait=1.0)) as (_, base),
        client_from(base, "127.0.0.2") as mallory,
        client_from(base, "127.0.0.1") as owner,
    ):
        for _ in range(2):  # multipart, as Gradio's own login page sends the form
            guess = mallory.post("/login", files={"username": (None, "Ada"), "password": (None, "x")})
            assert guess.status_code == 400
        assert owner.post("/login", data={"username": "ada", "password": "pw"}).status_code == 429
        assert owner.post("/login", data={"username": "bob", "password": "no"}).status_code == 400
        huge = owner.post("/login", data={"username": "bob", "password": "x" * 20_000})
        assert huge.status_code == 413
        time.sleep(1.05)
        assert owner.post("/login", data={"username": "ada", "password": "pw"}).status_code == 200
