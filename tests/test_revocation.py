"""Tokens can be taken back: deleting a user, changing its role or password, and logging out
invalidate older tokens at once, on every server process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from broker import Bus
from broker.models import Role
from server.identity.accounts import AccountError, AccountStore
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

PASSWORD = "correct-horse-battery"


def name() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


async def login(server: LiveServer, username: str, password: str = PASSWORD) -> str:
    status, body = await server.call(
        "POST", "/v1/auth/login", json={"username": username, "password": password}
    )
    assert status == 200, body
    return str(body["token"])


async def accepted(server: LiveServer, token: str) -> int:
    """The status of a call that checks the token first: 401 if refused, else 404."""
    status, _ = await server.call("GET", "/v1/vstudio/sessions/no-such-session/polls", token=token)
    return status


async def test_deleting_a_user_revokes_its_tokens_on_every_process(
    server_factory: ServerFactory, bus: Bus
) -> None:
    one, two = server_factory(), server_factory()
    user = name()
    store = AccountStore(bus.redis)
    await store.add(user, PASSWORD, Role.ARTIST)
    token = await login(one, user)
    assert await accepted(one, token) == 404 and await accepted(two, token) == 404
    assert await store.delete(user)
    for server in (one, two):
        status, body = await server.call(
            "GET", "/v1/vstudio/sessions/no-such-session/polls", token=token
        )
        assert status == 401 and "revoked" in body["message"], body
    assert not await store.delete(user)  # nothing left to delete


async def test_a_new_password_or_role_revokes_older_tokens(
    live_server: LiveServer, bus: Bus
) -> None:
    user = name()
    store = AccountStore(bus.redis)
    await store.add(user, PASSWORD, Role.ARTIST)
    first = await login(live_server, user)
    await store.set_password(user, "another-good-password")
    assert await accepted(live_server, first) == 401
    second = await login(live_server, user, "another-good-password")
    assert await accepted(live_server, second) == 404
    await store.add(user, "another-good-password", Role.VIEWER, replace=True)  # demoted
    assert await accepted(live_server, second) == 401
    third = await login(live_server, user, "another-good-password")
    status, body = await live_server.call("POST", "/v1/vstudio/sessions", token=third, json={})
    assert status == 403 or status == 400, body  # a viewer now, whatever the old token said


async def test_logout_revokes_that_token_only(live_server: LiveServer, bus: Bus) -> None:
    user = name()
    await AccountStore(bus.redis).add(user, PASSWORD, Role.VIEWER)
    kept, dropped = await login(live_server, user), await login(live_server, user)
    status, body = await live_server.call("POST", "/v1/auth/logout", token=dropped)
    assert status == 200 and body["revoked"] is True, body
    assert await accepted(live_server, dropped) == 401
    assert await accepted(live_server, kept) == 404
    status, _ = await live_server.call("POST", "/v1/auth/logout", token=dropped)
    assert status == 401  # already revoked


async def test_set_password_needs_an_existing_user_and_a_long_password(bus: Bus) -> None:
    store = AccountStore(bus.redis)
    try:
        await store.set_password(name(), "long-enough-password")
    except AccountError as exc:
        assert "no user" in str(exc)
    else:
        raise AssertionError("set_password created a user")
    user = name()
    await store.add(user, PASSWORD, Role.VIEWER)
    try:
        await store.set_password(user, "short")
    except AccountError as exc:
        assert "at least 10" in str(exc)
    else:
        raise AssertionError("a short password was accepted")


def run_cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_user_delete_passwd_and_logout_commands(
    live_server: LiveServer, bus: Bus, redis_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis_url,
        "VSTUDIO_JWT_SECRET": live_server.secret,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    env.pop("VSTUDIO_TOKEN", None)
    env.pop("VSTUDIO_SERVER", None)
    user = name()
    assert run_cli("user", "add", user, "--password", PASSWORD, env=env).returncode == 0
    done = run_cli(
        "login", user, "--password", PASSWORD, "--server", live_server.base_url, "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    stored = (tmp_path / "config" / "vstudio" / "credentials.json").read_text()
    token = __import__("json").loads(stored)["token"]
    done = run_cli("user", "passwd", user, "--password", "a-newer-password", env=env)
    assert done.returncode == 0, done.stderr
    assert await accepted(live_server, token) == 401
    done = run_cli("user", "passwd", user, "--password", "short", env=env)
    assert done.returncode == 1 and "at least 10" in done.stderr
    done = run_cli(
        "login", user, "--password", "a-newer-password", "--server", live_server.base_url, env=env
    )
    assert done.returncode == 0, done.stderr
    token = __import__("json").loads(
        (tmp_path / "config" / "vstudio" / "credentials.json").read_text()
    )["token"]
    done = run_cli("logout", env=env)
    assert done.returncode == 0, done.stderr
    assert await accepted(live_server, token) == 401
    assert not (tmp_path / "config" / "vstudio" / "credentials.json").exists()
    assert run_cli("logout", env=env).returncode == 3  # not logged in: nothing to do
    done = run_cli("user", "delete", user, env=env)
    assert done.returncode == 0 and user in done.stdout
    done = run_cli("user", "delete", user, env=env)
    assert done.returncode == 4 and "no user" in done.stderr


async def test_piped_passwords_are_read_from_standard_input(
    live_server: LiveServer, redis_url: str, tmp_path: Path
) -> None:
    """A password piped in is read from the pipe, even when a terminal is attached."""
    env = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis_url,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    user = name()
    done = run_cli("user", "add", user, env=env, stdin="first-password\nother-password\n")
    assert done.returncode == 2 and "differ" in done.stderr, done.stderr
    done = run_cli("user", "add", user, env=env, stdin="first-password\nfirst-password\n")
    assert done.returncode == 0, done.stderr
    done = run_cli(
        "login", user, "--server", live_server.base_url, env=env, stdin="first-password\n"
    )
    assert done.returncode == 0, done.stderr
    done = run_cli("user", "passwd", user, env=env, stdin="")
    assert done.returncode == 2 and "no password" in done.stderr, done.stderr
