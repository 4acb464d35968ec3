"""``vstudio announce TEXT [--session ID]``: a notice every client shows, over REST.

Without ``--session`` it goes to every connected client of every session (the token needs the
operator claim: ``vstudio token mint --user ops --operator``); with it, to that session's
clients, allowed to its artist and producers too.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import AsJson, ServerOption, TokenOption, emit, run_remote

console = Console(soft_wrap=True)


def announce(
    text: Annotated[str, typer.Argument(help="What every client shows.")],
    session: Annotated[
        str | None, typer.Option("--session", help="Only this session (default: every session).")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: AsJson = False,
) -> None:
    """Announce TEXT to every session (operators) or to one session (its artist, producers)."""
    body: dict[str, Any] = {"text": text}
    if session:
        body["sessionId"] = session

    async def work(client: VStudioClient) -> dict[str, Any]:
        answer: dict[str, Any] = await client.call("POST", "/v1/vstudio/announcements", body)
        return answer

    answer = run_remote(server, token, work)
    where = f"session {session}" if session else "every session"
    emit(answer, as_json, lambda: console.print(f"announced to {where}"))
