"""Reading the login settings: TUNEBOARD_AUTH forms, Space OAuth users, and the exposure warning.

.venv/bin/pytest tests/ui/test_auth.py -q
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.requests import Request

from finetune.ui import auth
from finetune.ui.auth import LoginError

SPACE = {"SYSTEM": "spaces", "SPACE_ID": "ada/tuneboard", "OAUTH_CLIENT_ID": "id", "SPACE_AUTHOR_NAME": "Ada"}


def test_inline_accounts() -> None:
    assert auth.read_accounts("ada:lovelace, bob:pa:ss") == {"ada": "lovelace", "bob": "pa:ss"}


def test_accounts_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "accounts"
    path.write_text("# who may sign in\n\nada:lovelace\n  bob:with, comma  \n", encoding="utf-8")
    assert auth.read_accounts(str(path)) == {"ada": "lovelace", "bob": "with, comma"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("ada", "neither user:password nor the path of an existing file"),
        ("ada:lovelace,bob", "TUNEBOARD_AUTH entry 2: expected user:password"),
        ("ada:lovelace,:s3cret", "TUNEBOARD_AUTH entry 2: expected user:password"),
        ("ada:", "TUNEBOARD_AUTH entry 1: expected user:password"),
        ("ada:one,ada:two", "user 'ada' is listed twice"),
    ],
)
def test_bad_values_name_the_variable_never_the_password(value: str, message: str) -> None:
    with pytest.raises(LoginError, match=message) as err:
        auth.read_accounts(value)
    assert "s3cret" not in str(err.value) and "lovelace" not in str(err.value)


def test_bad_file_line_named(tmp_path: Path) -> None:
    path = tmp_path / "accounts"
    path.write_text("ada:lovelace\n# fine\nbob\n", encoding="utf-8")
    with pytest.raises(LoginError, match=r"accounts, line 3: expected user:password"):
        auth.read_accounts(str(path))
    path.write_text("# nobody yet\n", encoding="utf-8")
    with pytest.raises(LoginError, match="no user:password lines"):
        auth.read_accounts(str(path))


def test_password_check() -> None:
    check = auth.password_check({"ada": "lovelace", "京子": "パスワード"})
    assert check("ada", "lovelace") and check("京子", "パスワード")
    assert not check("ada", "Lovelace") and not check("ada", "") and not check("bob", "lovelace")


def test_from_env_picks_the_login() -> None:
    assert not auth.from_env({}).on
    password = auth.from_env({"TUNEBOARD_AUTH": "ada:lovelace", **SPACE})  # TUNEBOARD_AUTH wins
    assert password.kind == "password" and password.launch["auth"]("ada", "lovelace")
    space = auth.from_env(SPACE)
    assert space.kind == "huggingface" and callable(space.launch["auth_dependency"])


def test_oauth_outside_a_space_is_refused() -> None:
    # Outside a Space gradio's sign-in would log anyone in as this machine's HF user: never rely on it.
    with pytest.raises(LoginError, match="outside a Hugging Face Space"):
        auth.from_env({**SPACE, "SYSTEM": ""})


def test_hf_users_default_to_the_space_owner() -> None:
    assert auth.hf_users(SPACE) == {"ada"}
    assert auth.hf_users({**SPACE, "TUNEBOARD_HF_USERS": "Bob, carol"}) == {"bob", "carol"}
    with pytest.raises(LoginError, match="TUNEBOARD_HF_USERS"):
        auth.hf_users({"SPACE_ID": "x/y"})


def request_with(session: dict | None) -> Request:
    scope = {"type": "http", "headers": [], "method": "GET", "path": "/"}
    if session is not None:
        scope["session"] = session
    return Request(scope)


def test_hf_user_check() -> None:
    user = auth.hf_user_check(frozenset({"ada"}))
    signed_in = {"oauth_info": {"userinfo": {"preferred_username": "Ada"}, "expires_at": time.time() + 60}}
    assert user(request_with(signed_in)) == "Ada"
    other = {"oauth_info": {"userinfo": {"preferred_username": "mallory"}, "expires_at": time.time() + 60}}
    assert user(request_with(other)) is None
    expired = {"oauth_info": {"userinfo": {"preferred_username": "ada"}, "expires_at": time.time() - 1}}
    assert user(request_with(expired)) is None
    assert user(request_with({})) is None and user(request_with(None)) is None


def test_a_team_space_lets_in_the_members_of_its_organization() -> None:
    login = auth.from_env({**SPACE, "TUNEBOARD_HF_ORGS": "Acme"})
    user = login.launch["auth_dependency"]
    member = {"userinfo": {"preferred_username": "eve", "orgs": [{"preferred_username": "acme"}]}}
    outsider = {"userinfo": {"preferred_username": "ada", "orgs": [{"preferred_username": "other"}]}}
    assert user(request_with({"oauth_info": member})) == "eve"
    assert user(request_with({"oauth_info": outsider})) is None  # the owner too: the list is the org's
    both = auth.from_env({**SPACE, "TUNEBOARD_HF_ORGS": "acme", "TUNEBOARD_HF_USERS": "ada"})
    assert both.launch["auth_dependency"](request_with({"oauth_info": outsider})) == "ada"


@pytest.mark.parametrize(
    "host, share, login, warned",
    [
        ("127.0.0.1", False, None, None),
        ("localhost", False, None, None),
        ("::1", False, None, None),
        ("0.0.0.0", False, None, "--host 0.0.0.0 without a login"),
        ("192.168.1.5", False, None, "--host 192.168.1.5"),
        ("box.example.org", False, None, "--host box.example.org"),
        ("127.0.0.1", True, None, "--share (a public gradio.live link) without a login"),
        ("0.0.0.0", True, None, "--host 0.0.0.0 and --share"),
        ("0.0.0.0", True, "password", None),
    ],
)
def test_exposure_warning(host: str, share: bool, login: str | None, warned: str | None) -> None:
    line = auth.exposure_warning(host, share, auth.Login(login or "none"))
    if warned is None:
        assert line is None
    else:
        assert line is not None and warned in line and "TUNEBOARD_AUTH" in line and "\n" not in line
