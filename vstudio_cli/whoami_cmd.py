"""``vstudio whoami``: which login a command would use, and whether the server still takes it.

Reads the active profile's stored login (or ``--token``/``VSTUDIO_TOKEN``), shows the user,
role and expiry written in the token, then asks the server with it (any token a request sends
is checked, so a revoked or expired one answers 401).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import jwt
import typer
from rich.console import Console
from rich.table import Table

from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import (
    AsJson,
    ExitCode,
    ProfileOption,
    ServerOption,
    TokenOption,
    active_profile,
    credentials_path,
    emit,
    err_console,
    list_profiles,
    load_credentials,
    resolve,
    run_remote,
)

__all__ = ["whoami"]


def _claims(token: str) -> dict[str, Any]:
    """What the token says about its holder (the server checks the signature, not us)."""
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return {}


def whoami(
    server: ServerOption = None,
    token: TokenOption = None,
    profile: ProfileOption = None,
    all_profiles: Annotated[
        bool, typer.Option("--all", help="List every stored profile (no server is asked).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Show who you are logged in as, and check the token with the server.

    Prints the user, role, server, profile and expiry of the active profile's login.

    Exit codes: 0 logged in and accepted, 3 not logged in or the token was refused,
    6 the server cannot be reached."""
    if all_profiles:
        _list_all(as_json)
        return
    name = active_profile(profile)
    url, jwt_token = resolve(server, token, name)
    if not jwt_token:
        emit(
            {"profile": name, "loggedIn": False},
            as_json,
            lambda: err_console.print(
                f"Not logged in (profile {name}). Run 'vstudio login USER --profile {name}'."
            ),
        )
        raise typer.Exit(ExitCode.UNAUTHENTICATED)
    claims = _claims(jwt_token)

    async def work(client: VStudioClient) -> Any:
        return await client.call("GET", "/v1/vstudio/sessions", params={"limit": "1"})

    run_remote(url, jwt_token, work)  # 401 (revoked, expired) exits 3 with the reason
    expires = claims.get("exp")
    data = {
        "profile": name,
        "loggedIn": True,
        "server": url,
        "userId": claims.get("sub"),
        "username": claims.get("name") or load_credentials(name).get("username"),
        "role": claims.get("role"),
        "expiresAt": expires,
        "credentials": str(credentials_path(name)),
    }

    def human() -> None:
        left = f" (in {max(0, int(expires - time.time())) // 60} min)" if expires else ""
        expiry = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires)) if expires else "-"
        Console().print(
            f"[bold]{data['username']}[/] ({data['role']}) on {url}, profile {name}; "
            f"token valid until {expiry}{left}",
            highlight=False,
        )

    emit(data, as_json, human)


def _list_all(as_json: bool) -> None:
    rows = []
    for name in list_profiles():
        stored = load_credentials(name)
        claims = _claims(stored.get("token", ""))
        rows.append(
            {
                "profile": name,
                "username": stored.get("username"),
                "role": claims.get("role"),
                "server": stored.get("server"),
                "expiresAt": claims.get("exp"),
            }
        )

    def human() -> None:
        if not rows:
            err_console.print("No stored logins. Run 'vstudio login USER [--profile NAME]'.")
            return
        table = Table("profile", "user", "role", "server", box=None)
        for row in rows:
            table.add_row(
                *(str(row[key] or "-") for key in ("profile", "username", "role", "server"))
            )
        Console().print(table)

    emit({"profiles": rows}, as_json, human)
    if not rows:
        raise typer.Exit(ExitCode.UNAUTHENTICATED)
