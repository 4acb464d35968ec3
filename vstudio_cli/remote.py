"""What every command that talks to a running server shares: where it is, who you are,
how answers are printed, and what the exit codes mean.

The server URL and token come from ``--server``/``--token``, else ``VSTUDIO_SERVER`` /
``VSTUDIO_TOKEN``, else what ``vstudio login`` stored in the user's config folder (like
``gh auth login``), under the active profile: ``--profile NAME`` (``vstudio --profile NAME
...`` for any command), else ``VSTUDIO_PROFILE``, else ``default``. Profiles let an artist and
a producer identity live side by side; ``default`` is ``credentials.json`` (as before
profiles), any other is ``profiles/NAME.json`` next to it, each readable by the user only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import aiohttp
import typer
from rich.console import Console

from vstudio_cli.client import ApiError, VStudioClient

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILE_ENV",
    "AsJson",
    "ExitCode",
    "ProfileOption",
    "ServerOption",
    "TokenOption",
    "active_profile",
    "credentials_path",
    "emit",
    "list_profiles",
    "load_credentials",
    "run_remote",
    "save_credentials",
]

T = TypeVar("T")

DEFAULT_SERVER = "http://127.0.0.1:8080"

ServerOption = Annotated[
    str | None, typer.Option("--server", help="Server URL (else VSTUDIO_SERVER, else login).")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="JWT (else VSTUDIO_TOKEN, else login).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Stored login to use, e.g. artist or producer [VSTUDIO_PROFILE, else default].",
    ),
]

DEFAULT_PROFILE = "default"
PROFILE_ENV = "VSTUDIO_PROFILE"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


class ExitCode(IntEnum):
    """What a command's exit code means, the same for every remote command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAUTHENTICATED = 3
    NOT_FOUND = 4
    CONFLICT = 5
    UNREACHABLE = 6
    FORBIDDEN = 7
    RATE_LIMITED = 8


STATUS_EXIT = {
    401: ExitCode.UNAUTHENTICATED,
    403: ExitCode.FORBIDDEN,
    404: ExitCode.NOT_FOUND,
    409: ExitCode.CONFLICT,
    429: ExitCode.RATE_LIMITED,
    400: ExitCode.USAGE,
    413: ExitCode.USAGE,
    422: ExitCode.USAGE,
}

err_console = Console(stderr=True, soft_wrap=True)
"""Messages are not wrapped by us: a piped or narrow terminal keeps ids and commands whole."""


def active_profile(flag: str | None = None) -> str:
    """``--profile``, else ``VSTUDIO_PROFILE``, else ``default``; a bad name exits 2."""
    name = flag or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if not PROFILE_NAME.fullmatch(name):
        err_console.print(
            f"[red]Error:[/] profile {name!r}: use letters, digits, '.', '_' or '-' (up to 40)"
        )
        raise typer.Exit(ExitCode.USAGE)
    return name


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vstudio"


def credentials_path(profile: str | None = None) -> Path:
    """Where the login of ``profile`` (default: the active one) is stored."""
    name = active_profile(profile)
    if name == DEFAULT_PROFILE:
        return _config_dir() / "credentials.json"
    return _config_dir() / "profiles" / f"{name}.json"


def list_profiles() -> list[str]:
    """Every profile with a stored login, ``default`` first."""
    found = [DEFAULT_PROFILE] if credentials_path(DEFAULT_PROFILE).exists() else []
    folder = _config_dir() / "profiles"
    return found + sorted(path.stem for path in folder.glob("*.json"))


def load_credentials(profile: str | None = None) -> dict[str, str]:
    try:
        data = json.loads(credentials_path(profile).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: str(value) for key, value in data.items() if isinstance(value, str)}


def save_credentials(server: str, token: str, username: str, profile: str | None = None) -> Path:
    """Store the login readable by the user only."""
    path = credentials_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps({"server": server, "token": token, "username": username}))
    return path


def resolve(
    server: str | None, token: str | None, profile: str | None = None
) -> tuple[str, str | None]:
    stored = load_credentials(profile)
    url = server or os.environ.get("VSTUDIO_SERVER") or stored.get("server") or DEFAULT_SERVER
    jwt = token or os.environ.get("VSTUDIO_TOKEN") or stored.get("token")
    return url.rstrip("/"), jwt


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON for scripts, or call ``human`` to print it for people."""
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        human()


def run_remote(
    server: str | None,
    token: str | None,
    work: Callable[[VStudioClient], Awaitable[T]],
    *,
    need_token: bool = True,
) -> T:
    """Run ``work`` with a client; turn failures into a message and a meaningful exit code."""
    url, jwt = resolve(server, token)
    if need_token and not jwt:
        err_console.print(
            "[red]Not logged in.[/] Run 'vstudio login', or pass --token / set VSTUDIO_TOKEN."
        )
        raise typer.Exit(ExitCode.UNAUTHENTICATED)

    async def main() -> T:
        async with VStudioClient(url, jwt) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise typer.Exit(130) from None
    except ApiError as exc:
        retry = f" Retry after {exc.retry_after} s." if exc.retry_after else ""
        err_console.print(f"[red]Error:[/] {exc.message}{retry}")
        raise typer.Exit(STATUS_EXIT.get(exc.status, ExitCode.FAILED)) from None
    except (aiohttp.ClientConnectionError, OSError, TimeoutError) as exc:
        err_console.print(f"[red]Cannot reach the server at {url}:[/] {exc}")
        raise typer.Exit(ExitCode.UNREACHABLE) from None
