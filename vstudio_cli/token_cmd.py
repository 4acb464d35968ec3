"""``vstudio token mint``: print a JWT signed with the configured secret, for scripts and tests."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.models import Role
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.auth import WeakSecret, mint_token, resolve_jwt_secret

app = typer.Typer(help="Tokens for scripts and tests.", no_args_is_help=True)


@app.command("mint")
def mint(
    user: Annotated[str, typer.Option(help="User id (the token's subject).")],
    role: Annotated[Role, typer.Option(help="artist, producer, viewer.")] = Role.VIEWER,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
    name: Annotated[str | None, typer.Option(help="Display name (default: the user id).")] = None,
    operator: Annotated[
        bool,
        typer.Option("--operator", help="Add the operator claim: may announce to every session."),
    ] = False,
) -> None:
    """Print an HS256 token that every server with the same secret accepts."""
    server = load_settings(ServerSettings)
    if server.jwt_algorithm != "HS256":
        typer.echo("vstudio token mint: the server checks RS256 tokens from its JWKS", err=True)
        raise typer.Exit(2)
    try:
        secret = resolve_jwt_secret(server, load_settings(BrokerSettings))
    except WeakSecret as exc:
        typer.echo(f"vstudio token mint: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        mint_token(
            secret,
            user_id=user,
            role=role,
            username=name,
            ttl=ttl,
            audience=server.jwt_audience,
            issuer=server.jwt_issuer,
            extra={"operator": True} if operator else None,
        )
    )
