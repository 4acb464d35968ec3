"""``vstudio logs [-f] [PART]``: what the parts of ``vstudio up`` wrote, readable.

Each part logs JSON lines to ``DATA/logs/PART.log``; this prints them as one readable line
each (``--raw`` for the JSON), prefixed with the part's name like ``docker compose logs``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from vstudio_cli.instance import data_dir_from
from vstudio_cli.logfiles import follow, log_parts, readable, tail
from vstudio_cli.remote import ExitCode, err_console
from vstudio_cli.status_cmd import DataDirOption

__all__ = ["logs"]

COLOURS = ("cyan", "magenta", "green", "blue", "yellow")


def logs(
    part: Annotated[
        list[str] | None,
        typer.Argument(help="Parts to show: server, worker, up, ... \\[all of them]."),
    ] = None,
    follow_flag: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--tail", "-n", help="Lines of each part to show first (0: all).")
    ] = 20,
    raw: Annotated[bool, typer.Option("--raw", help="The JSON lines as written.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Print the logs of vstudio up's parts (they live in DATA/logs/PART.log).

    Exit codes: 0 printed (or followed until Ctrl-C), 4 no such part or no logs at all."""
    folder = data_dir_from(data_dir)
    found = log_parts(folder)
    if not found:
        err_console.print(f"No logs in {folder / 'logs'}: has vstudio up run with this folder?")
        raise typer.Exit(ExitCode.NOT_FOUND)
    wanted = part or list(found)
    unknown = [name for name in wanted if name not in found]
    if unknown:
        err_console.print(
            f"[red]No part named {', '.join(unknown)}.[/] Parts: {', '.join(found)}",
            highlight=False,
        )
        raise typer.Exit(ExitCode.NOT_FOUND)
    chosen = {name: found[name] for name in wanted}
    width = max(len(name) for name in chosen)
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(found)}
    out = Console(highlight=False, soft_wrap=True)

    def show(name: str, line: str) -> None:
        text = Text(f"{name:<{width}} | ", style=colour[name])
        text.append(line if raw else readable(line))
        out.print(text)

    for name, path in chosen.items():
        for line in tail(path, lines):
            show(name, line)
    if not follow_flag:
        return
    try:
        for name, line in follow(chosen):
            show(name, line)
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.OK) from None
