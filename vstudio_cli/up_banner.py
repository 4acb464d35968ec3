"""What ``vstudio up`` prints when it is ready: the banner, the LAN QR code, or JSON.

Everything comes from the state ``up`` writes to its data folder, so a detached ``up`` and the
foreground one print the same. Passwords appear only when the caller passes them
(``--show-logins``): a banner is often on a shared or streamed screen.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.panel import Panel

from vstudio_cli.lan import qr_text

__all__ = ["lan_block", "panel", "show_ready", "shown_redis"]

console = Console()


def shown_redis(url: str) -> str:
    """``url`` without its password, for the screen and the state file's ``redisShown``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


def panel(state: dict[str, Any], logins: dict[str, str] | None) -> Panel:
    """The banner of a ready ``up`` (from its state); passwords only when ``logins`` is given."""
    base_url, sid = state["url"], state["session"]
    lines = [
        f"[bold]Fan page[/]       {state['page']}",
        f"[bold]Sessions[/]       {base_url}/",
        f"[bold]API[/]            {base_url}/openapi.json   metrics {base_url}/metrics",
        f"[bold]WebSocket[/]      {state['ws']}?ticket=...",
        "",
        "[bold]OBS overlays[/] (browser sources; vstudio overlay urls)",
        *(f"  {name:<10} {url}" for name, url in state["overlays"].items()),
        "",
    ]
    if logins is not None:
        lines += [
            "[bold]Logins[/] (username / password)",
            *(f"  {name:<9} {logins[name]}" for name in state["users"]),
        ]
    else:
        lines += [
            f"[bold]Logins[/]         {', '.join(state['users'])}",
            f"  passwords: {state['loginsFile']}  (or run with --show-logins)",
        ]
    lines += [
        "  guests may join the demo session without an account",
        "",
        "[bold]Producer console[/]",
        f"  vstudio login producer --profile producer --server {state['localUrl']}",
        f"  vstudio --profile producer console --session {sid}",
        "",
        "[bold]Ingest a real Twitch channel into this session[/]",
        f"  vstudio ingest twitch --session {sid} --channel CHANNEL",
        "  (or restart with: vstudio up --platform twitch:CHANNEL)",
        "",
    ]
    if state.get("certfile"):
        lines += [
            f"[bold]Self-signed certificate[/] {state['certfile']}",
            "  browsers warn once: accept it (on phones on this network too)",
            f"  for vstudio login/console: export SSL_CERT_FILE={state['certfile']}",
            "",
        ]
    lines.append(
        f"Data folder: {state['dataDir']}\n"
        "Stop with Ctrl-C or vstudio down · vstudio status · vstudio logs -f"
    )
    return Panel("\n".join(lines), title="V Studio realtime is up", expand=False)


def lan_block(state: dict[str, Any]) -> str:
    """The fans' page on the LAN and its QR code, for phones."""
    return (
        f"Phones on this network: {state['lanPage']}\n"
        f"{qr_text(state['lanPage'])}\n"
        "(scan with the phone's camera; the phone must be on the same network)"
    )


def show_ready(state: dict[str, Any], as_json: bool, logins: dict[str, str] | None) -> None:
    """Print what a ready ``up`` offers: JSON for scripts, else the banner (and the LAN QR);
    the demo passwords only when ``logins`` is given (``--show-logins``)."""
    if as_json:
        summary = {
            key: state.get(key)
            for key in ("url", "page", "ws", "certfile", "session", "dataDir", "overlays")
        }
        summary |= {"lan": state.get("lanPage"), "loginsFile": state["loginsFile"]}
        summary["pid"] = state["pid"]
        if logins is not None:
            summary["logins"] = logins
        typer.echo(json.dumps(summary))
        return
    console.print(panel(state, logins))
    if state.get("lanPage"):
        console.print(lan_block(state), highlight=False)
