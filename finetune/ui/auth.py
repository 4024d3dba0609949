"""Who may open the dashboard: accounts from TUNEBOARD_AUTH, or Hugging Face OAuth on a Space.

    TUNEBOARD_AUTH=ada:secret,bob:other python app.py     # accounts inline
    TUNEBOARD_AUTH=/path/to/accounts python app.py         # a file: one user:password a line, # comments
    .venv/bin/pytest tests/ui/test_security.py -q

On a Space with ``hf_oauth: true`` (SPACE_ID and OAUTH_CLIENT_ID set), people sign in with their Hugging Face
account at /login/huggingface and only those named in TUNEBOARD_HF_USERS (default: the Space's owner), or
members of an organization named in TUNEBOARD_HF_ORGS (a team Space, with hf_oauth_authorized_org), get in.
TUNEBOARD_AUTH wins when both are set. :func:`from_env` reads all this once at startup and fails there, naming
the variable (never echoing a password); :func:`allowed` is the one test every guard applies to a request.
"""

from __future__ import annotations

import hmac
import inspect
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request

ENV = "TUNEBOARD_AUTH"
HF_USERS_ENV = "TUNEBOARD_HF_USERS"
HF_ORGS_ENV = "TUNEBOARD_HF_ORGS"


class LoginError(ValueError):
    """A login setting that cannot be used; the message names the variable and the fix."""


@dataclass
class Login:
    """What ``Blocks.launch`` needs for the chosen login: ``auth=`` or ``auth_dependency=``, or nothing."""

    kind: str = "none"  # "none" | "password" | "huggingface"
    launch: dict[str, Any] = field(default_factory=dict)

    @property
    def on(self) -> bool:
        return self.kind != "none"


def from_env(environ: Mapping[str, str] = os.environ) -> Login:
    """The login the environment asks for; raises LoginError on a value that cannot work."""
    if environ.get(ENV, "").strip():
        return Login("password", {"auth": password_check(read_accounts(environ[ENV]))})
    if environ.get("SPACE_ID") and environ.get("OAUTH_CLIENT_ID"):
        if environ.get("SYSTEM") != "spaces":  # gradio would fake the sign-in with this machine's HF token
            raise LoginError(
                "OAUTH_CLIENT_ID is set outside a Hugging Face Space (SYSTEM=spaces is missing); unset it, "
                f"or use {ENV}=user:password for a login here"
            )
        orgs = _names(environ.get(HF_ORGS_ENV))
        users = hf_users(environ) if not orgs or environ.get(HF_USERS_ENV) else frozenset()
        return Login("huggingface", {"auth_dependency": hf_user_check(users, orgs)})
    return Login()


def read_accounts(value: str) -> dict[str, str]:
    """``user:password[,user:password...]``, or the path of a file with one ``user:password`` a line."""
    path = Path(value.strip()).expanduser()
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        entries = [(f"{ENV} file {path}, line {i}", line.strip()) for i, line in enumerate(lines, 1)]
        entries = [(where, line) for where, line in entries if line and not line.startswith("#")]
    elif ":" not in value:
        raise LoginError(f"{ENV} is neither user:password nor the path of an existing file")
    else:
        entries = [(f"{ENV} entry {i}", part.strip()) for i, part in enumerate(value.split(","), 1)]
    accounts: dict[str, str] = {}
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise LoginError(f"{where}: expected user:password with both parts non-empty")
        if user in accounts:
            raise LoginError(f"{where}: user {user!r} is listed twice")
        accounts[user] = password
    if not accounts:
        raise LoginError(f"{ENV} names a file with no user:password lines")
    return accounts


def password_check(accounts: dict[str, str]) -> Callable[[str, str], bool]:
    """``auth=`` for launch: compares in constant time, and takes as long for an unknown user."""
    encoded = {user: password.encode() for user, password in accounts.items()}

    def check(username: str, password: str) -> bool:
        expected = encoded.get(username)
        same = hmac.compare_digest(password.encode(), expected or b"\0" * 32)
        return expected is not None and same

    return check


def hf_users(environ: Mapping[str, str]) -> frozenset[str]:
    """The Hugging Face accounts let in: TUNEBOARD_HF_USERS, else the Space's owner."""
    users = _names(environ.get(HF_USERS_ENV) or environ.get("SPACE_AUTHOR_NAME"))
    if not users:
        raise LoginError(f"{HF_USERS_ENV} is empty and SPACE_AUTHOR_NAME is unset: name who may sign in")
    return users


def _names(text: str | None) -> frozenset[str]:
    return frozenset(n.strip().casefold() for n in (text or "").split(",") if n.strip())


def hf_user_check(
    users: frozenset[str], orgs: frozenset[str] = frozenset()
) -> Callable[[Request], str | None]:
    """``auth_dependency=`` for launch: the signed-in HF username when it is in ``users`` or belongs to one of
    ``orgs`` (the userinfo's ``orgs``: a team Space's members), else None."""

    def user(request: Request) -> str | None:
        userinfo = hf_userinfo(request)
        name = hf_name(request)
        if name is None:
            return None
        member_of = {str(o.get("preferred_username", "")).casefold() for o in userinfo.get("orgs") or []}
        return name if name.casefold() in users or member_of & orgs else None

    return user


def hf_userinfo(request: Request) -> dict[str, Any]:
    """The Hugging Face userinfo of the session's sign-in, if it has not expired (else {})."""
    session = request.scope.get("session") or {}  # set by the OAuth session middleware
    info = session.get("oauth_info") or {}
    if info.get("expires_at") is not None and info["expires_at"] < time.time():
        return {}
    return info.get("userinfo") or {}


def hf_name(request: Request) -> str | None:
    """Who is signed in to Hugging Face in this session, allowed here or not."""
    name = hf_userinfo(request).get("preferred_username")
    return name if isinstance(name, str) else None


def gradio_app(scope: dict, blocks: Any = None) -> Any:
    """Gradio's server app for a request to a route mounted beside it (it holds the login's sessions)."""
    app = scope.get("app")
    if hasattr(app, "cookie_id") and hasattr(app, "tokens"):
        return app
    return getattr(blocks, "server_app", None) or getattr(getattr(blocks, "_queue", None), "server_app", None)


async def allowed(app: Any, request: Request) -> bool:
    """Gradio's own test: no login configured, or a valid login cookie, or ``auth_dependency`` says who."""
    if app is None or not hasattr(app, "cookie_id"):
        return False  # not Gradio's app: cannot tell, so refuse
    dependency = getattr(app, "auth_dependency", None)
    if getattr(app, "auth", None) is None and dependency is None:
        return True
    if dependency is not None:
        user = dependency(request)
        if inspect.isawaitable(user):
            user = await user
        return user is not None
    token = request.cookies.get(f"access-token-{app.cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{app.cookie_id}"
    )
    return token is not None and token in app.tokens


def hf_sign_in(blocks: Any) -> tuple[list[Any], list[Any]]:
    """(routes, middleware) for /login/huggingface, /login/callback and /logout, as gradio would add them.

    Gradio 6.31 attaches its OAuth routes only to a page holding a ``gr.LoginButton``; this page has none
    (nobody anonymous ever sees it), so the same routes and signed session cookie are built here.
    """
    if getattr(blocks, "expects_oauth", False):
        return [], []  # gradio attaches them itself
    from fastapi import FastAPI
    from gradio import oauth

    holder = FastAPI(openapi_url=None)
    oauth.attach_oauth(holder)
    return list(holder.router.routes), list(holder.user_middleware)


def exposure_warning(host: str, share: bool, login: Login) -> str | None:
    """One line for stderr when the page is reachable from other machines without a login."""
    if login.on:
        return None
    where = [f"--host {host}"] if not is_loopback(host) else []
    where += ["--share (a public gradio.live link)"] if share else []
    if not where:
        return None
    return (
        f"WARNING: {' and '.join(where)} without a login: anyone who reaches this port can read your data "
        f"and start jobs. Set {ENV}=user:password (or a file of such lines), or bind 127.0.0.1."
    )


def container_refusal(host: str, login: Login, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why a container must not start: it binds 0.0.0.0 (a published port reaches it from anywhere) and has
    no login, unless TUNEBOARD_PRIVATE_NETWORK=1 says the port is private. None when it may start."""
    if not environ.get("TUNEBOARD_CONTAINER") or login.on or is_loopback(host):
        return None
    if environ.get("TUNEBOARD_PRIVATE_NETWORK") == "1":
        return None
    return (
        f"refusing to serve {host} from a container without a login: anyone who reaches the published port "
        f"could read your data and start jobs. Set {ENV}=user:password (docker run -e {ENV}=...), or, if the "
        "port is reachable only from a private network, set TUNEBOARD_PRIVATE_NETWORK=1."
    )


def is_shared(host: str, share: bool, login: Login, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether people other than the machine's owner can reach the page: a login (it exists to let others in),
    a host other than loopback, a gradio.live link, or a Hugging Face Space."""
    return login.on or share or not is_loopback(host) or environ.get("SYSTEM") == "spaces"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere
