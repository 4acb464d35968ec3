"""Login is throttled per username and per client address, costs the same for unknown users,
and the server refuses short passwords and a short JWT secret."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from broker import Bus
from broker.models import Role
from config import BrokerSettings, ServerSettings
from server.identity.accounts import AccountError, AccountStore
from server.identity.auth import WeakSecret, resolve_jwt_secret
from tests.support.live_server import LiveServer
from tests.support.types import ServerFactory

PASSWORD = "correct-horse-battery"


def name() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


def address() -> str:
    """A loopback address of this test's own: address limits are shared by every test."""
    return "127." + ".".join(str(secrets.randbelow(250) + 2) for _ in range(3))


async def login(
    server: LiveServer, username: str, password: str, source: str = "127.0.0.1"
) -> tuple[int, dict[str, object]]:
    status, body = await server.call(
        "POST",
        "/v1/auth/login",
        json={"username": username, "password": password},
        source=source,
    )
    return status, body


async def test_failed_logins_are_limited_per_username_and_a_right_password_waits(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(
        VSTUDIO_LOGIN_FAILURES_PER_USER="3", VSTUDIO_LOGIN_FAILURES_PER_ADDRESS="100"
    )
    user = name()
    await AccountStore(bus.redis).add(user, PASSWORD, Role.VIEWER)
    for _ in range(3):
        status, body = await login(server, user, "wrong-password-here")
        assert status == 401, body
    status, body = await login(server, user, "wrong-password-here")
    assert status == 429 and body["code"] == 4003 and float(str(body["retryAfter"])) > 0
    status, body = await login(server, user, PASSWORD)
    assert status == 429, "the right password after the limit must still wait"
    other = name()  # the limit is this username's, not everyone's
    await AccountStore(bus.redis).add(other, PASSWORD, Role.VIEWER)
    status, _ = await login(server, other, PASSWORD)
    assert status == 200


async def test_failed_logins_are_limited_per_client_address(
    server_factory: ServerFactory, bus: Bus
) -> None:
    server = server_factory(
        VSTUDIO_LOGIN_FAILURES_PER_USER="100", VSTUDIO_LOGIN_FAILURES_PER_ADDRESS="4"
    )
    source = address()
    for _ in range(4):  # four different usernames from one address
        status, _ = await login(server, name(), "wrong-password-here", source)
        assert status == 401
    user = name()
    await AccountStore(bus.redis).add(user, PASSWORD, Role.VIEWER)
    status, body = await login(server, user, PASSWORD, source)
    assert status == 429 and body["code"] == 4003
    status, _ = await login(server, user, PASSWORD, address())  # another address may
    assert status == 200


async def test_successful_logins_are_not_failures(server_factory: ServerFactory, bus: Bus) -> None:
    server = server_factory(VSTUDIO_LOGIN_FAILURES_PER_USER="2")
    user = name()
    await AccountStore(bus.redis).add(user, PASSWORD, Role.VIEWER)
    status, _ = await login(server, user, "wrong-password-here")
    assert status == 401
    for _ in range(5):
        status, _ = await login(server, user, PASSWORD)
        assert status == 200


async def test_an_unknown_username_costs_a_password_check(bus: Bus) -> None:
    """No user enumeration by timing: an unknown user is checked against a dummy hash."""
    store = AccountStore(bus.redis)
    known = name()
    await store.add(known, PASSWORD, Role.VIEWER)

    async def cost(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(AccountError):
            await store.check(username, "wrong-password-here")
        return time.perf_counter() - start

    await cost(name())  # the dummy hash is made on first use
    known_cost = min([await cost(known) for _ in range(3)])
    unknown_cost = min([await cost(name()) for _ in range(3)])
    invalid_cost = min([await cost("not a valid username!") for _ in range(3)])
    assert unknown_cost > 0.5 * known_cost, (unknown_cost, known_cost)
    assert invalid_cost > 0.5 * known_cost, (invalid_cost, known_cost)


async def test_passwords_have_a_minimum_length(bus: Bus) -> None:
    store = AccountStore(bus.redis)
    with pytest.raises(AccountError, match="at least 10 characters"):
        await store.add(name(), "short-pw", Role.VIEWER)
    with pytest.raises(AccountError, match="at least 12 characters"):
        await store.add(name(), "eleven-char", Role.VIEWER, min_length=12)
    assert (await store.add(name(), "ten-chars!", Role.VIEWER)).role == Role.VIEWER


def test_user_add_refuses_a_short_password(redis_url: str) -> None:
    env = {**os.environ, "VSTUDIO_REDIS_URL": redis_url, "VSTUDIO_PASSWORD_MIN_LENGTH": "14"}
    cli = [sys.executable, "-m", "vstudio_cli.main"]
    done = subprocess.run(
        [*cli, "user", "add", name(), "--password", "thirteen-char"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "at least 14 characters" in done.stderr


def test_a_short_jwt_secret_is_refused_unless_allowed(tmp_path: Path) -> None:
    broker = BrokerSettings(data_dir=str(tmp_path))
    with pytest.raises(WeakSecret, match="32 bytes"):
        resolve_jwt_secret(ServerSettings(jwt_secret="only-twenty-bytes-xx"), broker)
    weak = ServerSettings(jwt_secret="only-twenty-bytes-xx", allow_weak_jwt_secret=True)
    assert resolve_jwt_secret(weak, broker) == "only-twenty-bytes-xx"
    strong = "x" * 32
    assert resolve_jwt_secret(ServerSettings(jwt_secret=strong), broker) == strong


@pytest.mark.slow
def test_serve_with_a_short_secret_exits_2_with_the_reason(redis_url: str) -> None:
    env = {**os.environ, "VSTUDIO_REDIS_URL": redis_url, "VSTUDIO_JWT_SECRET": "too-short"}
    done = subprocess.run(
        [sys.executable, "-m", "vstudio_cli.main", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "32 bytes" in done.stderr


def test_login_settings_have_sane_defaults() -> None:
    settings = ServerSettings()
    assert settings.login_failures_per_user == 5
    assert settings.password_min_length == 10
    assert not settings.allow_weak_jwt_secret


async def test_past_the_limit_every_attempt_waits_even_many_at_once(
    server_factory: ServerFactory, bus: Bus
) -> None:
    """The failures are counted in Redis, so a burst of attempts sees them all."""
    server = server_factory(VSTUDIO_LOGIN_FAILURES_PER_USER="3")
    user = name()
    await AccountStore(bus.redis).add(user, PASSWORD, Role.VIEWER)
    await asyncio.gather(*(login(server, user, "wrong-password-here") for _ in range(3)))
    statuses = [
        s for s, _ in await asyncio.gather(*(login(server, user, PASSWORD) for _ in range(5)))
    ]
    assert statuses == [429] * 5
