"""``vstudio token mint``: print a JWT signed with the configured secret, for scripts and tests.
``vstudio token check ADDRESS --session ID``: what the token gate sees for a wallet."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from broker.models import Role
from config import BrokerSettings, ServerSettings, load_settings
from server.identity.auth import WeakSecret, mint_token, resolve_jwt_secret
from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import AsJson, ExitCode, ServerOption, TokenOption, emit, run_remote

app = typer.Typer(
    help="Tokens: login tokens for scripts and tests, and what the token gate sees.",
    no_args_is_help=True,
)


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


@app.command("check")
def check(
    address: Annotated[str, typer.Argument(help="The wallet address (0x and 40 hex digits).")],
    session: Annotated[str, typer.Option("--session", help="The session whose tokens count.")],
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Ask the server's token gate whether ADDRESS holds the session's requiredTokens.

    Prints each requirement with the balance read on-chain (in whole tokens, scaled by the
    token's decimals) and whether it passes. The session's artist and producers may check any
    address. Exit code 0: the wallet passes; 1: it does not (or the check could not be made:
    the reason says which); 4: no such session; 7: not allowed.

        vstudio token check 0xC0fFee254729296a45a3885639AC7E10F9d54979 --session abc123
    """

    async def ask(client: VStudioClient) -> Any:
        return await client.call(
            "GET", f"/v1/vstudio/sessions/{session}/gate", params={"address": address}
        )

    verdict = run_remote(server, token, ask)

    def human() -> None:
        console = Console()
        table = Table("token", "chain", "standard", "balance", "minimum", "passes")
        for item in verdict["checks"]:
            need = item["requirement"]
            name = need["contractAddress"]
            if need.get("tokenId") is not None:
                name += f" #{need['tokenId']}"
            table.add_row(
                name,
                str(item["chainId"]),
                item.get("standard") or "?",
                item.get("balanceTokens") or "(unknown)",
                str(need["minBalance"]),
                "yes" if item["passed"] else "no",
            )
        if verdict["checks"]:
            console.print(table)
        verb = "[green]passes[/]" if verdict["passed"] else "[red]does not pass[/]"
        console.print(f"{verdict['address']} {verb} the gate of session {session}")
        if not verdict["passed"]:
            console.print(verdict["reason"], markup=False)

    emit(verdict, as_json, human)
    if not verdict["passed"]:
        raise typer.Exit(ExitCode.FAILED)
