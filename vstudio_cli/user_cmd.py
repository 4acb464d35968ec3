"""``vstudio user add|passwd|delete``: accounts (argon2 hashes in Redis) that log in.

Changing an account's role (``add --replace``) or password, or deleting it, ends the tokens
it logged in with before, on every server at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from broker import BusUnavailable, EmbeddedServerError
from broker.models import Role
from broker.runtime import open_bus, redis_url
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.accounts import AccountError, AccountStore
from vstudio_cli.passwords import ask_password

app = typer.Typer(help="Accounts that log in with a password.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Username (letters, digits, _ . -).")],
    role: Annotated[Role, typer.Option(help="artist, producer or viewer.")] = Role.VIEWER,
    password: Annotated[
        str | None, typer.Option(help="Password; prompted (hidden) when not given.")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an existing account.")] = False,
    redis_url_flag: Annotated[str | None, typer.Option("--redis-url", help="Redis URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the account as JSON.")] = False,
) -> None:
    """Create an account."""
    if role == Role.TOKEN_HOLDER:
        typer.echo(
            "vstudio user add: token_holder is granted per session, not per account", err=True
        )
        raise typer.Exit(2)
    if password is None:
        password = ask_password("Password", confirm=True)
    broker = load_settings(BrokerSettings, redis_url=redis_url_flag)
    min_length = load_settings(ServerSettings).password_min_length

    async def create(url: str) -> dict[str, str]:
        async with open_bus(broker, url) as bus:
            store = AccountStore(bus.redis)
            account = await store.add(name, password, role, replace=replace, min_length=min_length)
            return account.wire()

    try:
        with redis_url(broker) as url:
            account = asyncio.run(create(url))
    except AccountError as exc:
        typer.echo(f"vstudio user add: {exc}", err=True)
        raise typer.Exit(1) from None
    except (BusUnavailable, EmbeddedServerError) as exc:
        typer.echo(f"vstudio user add: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(account))
    else:
        typer.echo(f"created {account['role']} {account['username']}")


T = TypeVar("T")
RedisUrlOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL.")]


def _with_accounts(
    command: str, redis_url_flag: str | None, work: Callable[[AccountStore], Awaitable[T]]
) -> T:
    """Run ``work`` on the accounts in Redis; a refused change exits 1 with the reason."""
    broker = load_settings(BrokerSettings, redis_url=redis_url_flag)

    async def run(url: str) -> T:
        async with open_bus(broker, url) as bus:
            return await work(AccountStore(bus.redis))

    try:
        with redis_url(broker) as url:
            return asyncio.run(run(url))
    except (AccountError, BusUnavailable, EmbeddedServerError) as exc:
        typer.echo(f"vstudio user {command}: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="Username.")],
    password: Annotated[
        str | None, typer.Option(help="New password; prompted (hidden) when not given.")
    ] = None,
    redis_url_flag: RedisUrlOption = None,
) -> None:
    """Set a new password; the tokens the user logged in with before stop working."""
    if password is None:
        password = ask_password("New password", confirm=True)
    min_length = load_settings(ServerSettings).password_min_length
    secret = password

    async def change(store: AccountStore) -> None:
        await store.set_password(name, secret, min_length=min_length)

    _with_accounts("passwd", redis_url_flag, change)
    typer.echo(f"new password for {name}; older tokens are revoked")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Username.")],
    redis_url_flag: RedisUrlOption = None,
) -> None:
    """Delete an account; its tokens stop working at once (exit 4 if there is no such user)."""

    async def remove(store: AccountStore) -> bool:
        return await store.delete(name)

    if not _with_accounts("delete", redis_url_flag, remove):
        typer.echo(f"vstudio user delete: no user {name}", err=True)
        raise typer.Exit(4)
    typer.echo(f"deleted {name}; its tokens are revoked")
