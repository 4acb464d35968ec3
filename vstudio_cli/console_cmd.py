"""``vstudio console --session ID``: open the producer dashboard of one session.

Server and token come from the flags, else ``VSTUDIO_SERVER`` / ``VSTUDIO_TOKEN``, else the
stored login (:mod:`vstudio_cli.remote`). The dashboard itself is :mod:`vstudio_cli.console`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import ServerOption, TokenOption, resolve, run_remote

__all__ = ["console"]


def console(
    session: Annotated[str, typer.Option("--session", "-s", help="The session to produce.")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Open the producer console: live chat, polls, reactions, tips and session controls.

    Exit codes: 0 after quitting, 3 not logged in, 4 no such session, 6 server unreachable.
    """
    url, jwt = resolve(server, token)

    async def exists(client: VStudioClient) -> dict[str, Any]:
        return await client.get_session(session)

    # A wrong id, a refused token or no server is said here with its exit code (4, 3, 6), not
    # on a dashboard that then quits with 0.
    run_remote(url, jwt, exists)
    from vstudio_cli.console.app import ConsoleApp  # Textual loads only for this command
    from vstudio_cli.console.link import SessionLink

    app = ConsoleApp(SessionLink(VStudioClient(url, jwt), session), close_client=True)
    try:
        app.run()
    except KeyboardInterrupt:
        pass
    if app.return_code:
        raise typer.Exit(app.return_code)
