"""``vstudio user add``: create an account (argon2 hash in Redis) for login."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from broker import BusUnavailable, EmbeddedServerError
from broker.models import Role
from broker.runtime import open_bus, redis_url
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.accounts import AccountError, AccountStore

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
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
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
