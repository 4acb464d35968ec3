"""``vstudio console --session ID``: open the producer dashboard of one session.

Server and token come from the flags, else ``VSTUDIO_SERVER`` / ``VSTUDIO_TOKEN``, else the
stored login (:mod:`vstudio_cli.remote`). The dashboard itself is :mod:`vstudio_cli.console`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import ExitCode, ServerOption, TokenOption, err_console, resolve

__all__ = ["console"]


def console(
    session: Annotated[str, typer.Option("--session", "-s", help="The session to produce.")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Open the producer console: live chat, polls, reactions, tips and session controls."""
    url, jwt = resolve(server, token)
    if not jwt:
        err_console.print(
            "[red]Not logged in.[/] Run 'vstudio login', or pass --token / set VSTUDIO_TOKEN."
        )
        raise typer.Exit(ExitCode.UNAUTHENTICATED)
    from vstudio_cli.console.app import ConsoleApp  # Textual loads only for this command
    from vstudio_cli.console.link import SessionLink

    app = ConsoleApp(SessionLink(VStudioClient(url, jwt), session), close_client=True)
    try:
        app.run()
    except KeyboardInterrupt:
        pass
    if app.return_code:
        raise typer.Exit(app.return_code)
