"""``vstudio session sources add|remove|list``: what chat the worker fleet reads for a session.

Over REST with the logged-in token, like every ``vstudio session`` command, with ``--json`` and
the exit codes of :class:`vstudio_cli.remote.ExitCode` (a target the platform refuses is 2,
an ended session 5, a source the session does not have 4).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.sources import SourceKind, SourceSpec
from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import (
    AsJson,
    ExitCode,
    ServerOption,
    TokenOption,
    emit,
    err_console,
    run_remote,
)

__all__ = ["app", "source_fields", "sources_path"]

app = typer.Typer(
    help="Declare the chat the worker fleet reads for a session (artist, producers, operators).",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)

PLATFORMS = ", ".join(str(kind) for kind in SourceKind)

SessionOption = Annotated[str, typer.Option("--session", help="Session id.")]
SourceArgument = Annotated[
    str | None,
    typer.Argument(
        help="platform:target, e.g. twitch:shroud, youtube:dQw4w9WgXcQ, tiktok:someone, "
        "discord:123456789012345678, or simulate:3 for made-up demo chat at 3 msg/s (or "
        "--platform and --target)."
    ),
]
PlatformOption = Annotated[str | None, typer.Option(help=f"One of {PLATFORMS}.")]
TargetOption = Annotated[
    str | None,
    typer.Option(help="Twitch channel, YouTube video/channel id or @handle, TikTok user, "
                 "Discord channel id, or the simulate rate in msg/s."),
]  # fmt: skip


def sources_path(session_id: str, source_id: str = "") -> str:
    tail = f"/{quote(source_id, safe=':@')}" if source_id else ""
    return f"/v1/vstudio/sessions/{quote(session_id, safe='')}/sources{tail}"


def _usage(message: str) -> typer.Exit:
    err_console.print(f"[red]Error:[/] {message}")
    return typer.Exit(ExitCode.USAGE)


def source_fields(source: str | None, platform: str | None, target: str | None) -> dict[str, str]:
    """``{platform, target}`` from ``platform:target`` or the two flags (exit 2 otherwise)."""
    if source is not None:
        if platform is not None or target is not None:
            raise _usage("give platform:target or --platform and --target, not both")
        platform, sep, target = source.partition(":")
        if not sep or not platform or not target:
            raise _usage(f"{source!r} is not platform:target (e.g. twitch:shroud)")
    if not platform or not target:
        raise _usage("say which source: platform:target, or --platform and --target")
    if platform not in {str(kind) for kind in SourceKind}:
        raise _usage(f"{platform!r} is not a platform to read chat from ({PLATFORMS})")
    return {"platform": platform, "target": target}


@app.command("add")
def add(
    session: SessionOption,
    source: SourceArgument = None,
    platform: PlatformOption = None,
    target: TargetOption = None,
    credentials: Annotated[
        str | None,
        typer.Option(help="Name of a credentials set in the workers' settings (default: default)."),
    ] = None,
    redundancy: Annotated[
        int | None,
        typer.Option(min=1, max=3, help="Workers reading it at once (default: the fleet's)."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Declare a source for the session; again with other --credentials or --redundancy
    replaces it. The workers read it while the session is live."""
    body: dict[str, Any] = source_fields(source, platform, target)
    if credentials is not None:
        body["credentials"] = credentials
    if redundancy is not None:
        body["redundancy"] = redundancy

    async def work(client: VStudioClient) -> dict[str, Any]:
        answer: dict[str, Any] = await client.call("POST", sources_path(session), body)
        return answer

    answer = run_remote(server, token, work)
    verb = "added" if answer["created"] else "replaced"
    emit(
        answer,
        as_json,
        lambda: console.print(f"{verb} {answer['source']['id']} for session {session}"),
    )


@app.command("remove")
def remove(
    session: SessionOption,
    source: SourceArgument = None,
    platform: PlatformOption = None,
    target: TargetOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Withdraw a source from the session (exit 4 when the session does not have it)."""
    fields = source_fields(source, platform, target)
    try:  # the one spelling the server keeps (#Shroud is twitch:shroud)
        source_id = SourceSpec(platform=SourceKind(fields["platform"]), target=fields["target"]).id
    except ValidationError:
        source_id = f"{fields['platform']}:{fields['target']}"

    async def work(client: VStudioClient) -> dict[str, Any]:
        answer: dict[str, Any] = await client.call("DELETE", sources_path(session, source_id))
        return answer

    answer = run_remote(server, token, work)
    emit(answer, as_json, lambda: console.print(f"removed {source_id} from session {session}"))


def _lag(ms: int | None) -> str:
    return "-" if ms is None else f"{ms} ms"


@app.command("list")
def list_sources(
    session: SessionOption,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """The session's sources, each with the workers reading it and how it goes."""

    async def work(client: VStudioClient) -> list[dict[str, Any]]:
        answer = await client.call("GET", sources_path(session), params={"health": "1"})
        sources: list[dict[str, Any]] = answer["sources"]
        return sources

    sources = run_remote(server, token, work)

    def human() -> None:
        if not sources:
            console.print(
                f"session {session} has no sources (add one: vstudio session sources add)"
            )
            return
        table = Table(title=f"session {session}: {len(sources)} source(s)")
        for column in ("source", "credentials", "owners", "state", "msg/s", "lag", "last error"):
            table.add_column(column)
        for row in sources:
            wanted = row.get("redundancy") or 1
            owners = row.get("owners", [])
            table.add_row(  # Text, not markup: what workers report may hold [brackets]
                Text(row["id"]),
                Text(row["credentials"]),
                Text(f"{', '.join(owners) or 'none'} ({len(owners)}/{wanted})"),
                Text(row.get("state", "-")),
                f"{row.get('msgPerS', 0.0):.1f}",
                _lag(row.get("lagMs")),
                Text(row.get("lastError") or ""),
                style="red" if row.get("state") == "unclaimed" else "",
            )
        console.print(table)

    emit(sources, as_json, human)
