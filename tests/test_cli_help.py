"""Every command's ``--help``, as people read it: no Python type placeholders, no words lost to
rich markup, no pointer into the source for a format, at a narrow and a wide width."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from vstudio_cli.helptext import commands, tidy
from vstudio_cli.main import app

ROOT = typer.main.get_command(app)
tidy(ROOT)
EVERY_COMMAND = list(commands(ROOT))
PLACEHOLDER = re.compile(r"<(bool|list\[[^>]*)>")
SOURCE_POINTER = re.compile(r"\b[\w/]+\.py\b|vstudio_cli/|\bsee the source\b", re.IGNORECASE)


def help_strings(command: Any) -> list[str]:
    """What the command's author wrote: its help and every parameter's."""
    written = [command.help or ""]
    written += [param.help or "" for param in command.params if hasattr(param, "help")]
    return [text for text in written if text]


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in EVERY_COMMAND}
    assert {"", "up", "session apply", "ingest twitch", "console", "poll create"} <= names


@pytest.mark.parametrize(
    "command",
    [c for _, c in EVERY_COMMAND],
    ids=[" ".join(p) or "vstudio" for p, _ in EVERY_COMMAND],
)
def test_written_help_survives_rich_markup(command: Any) -> None:
    """Square brackets are rich markup: "TOML file with [broker] tables" printed as "TOML file
    with  tables". A bracket meant as text must be escaped (``\\[``)."""
    for written in help_strings(command):
        text = written.replace("\b", "")  # click's "keep these lines as they are" mark
        shown = Text.from_markup(text).plain
        assert shown == text.replace("\\[", "["), f"markup ate words of {text!r}: {shown!r}"


@pytest.mark.parametrize(
    "path", [p for p, _ in EVERY_COMMAND], ids=[" ".join(p) or "vstudio" for p, _ in EVERY_COMMAND]
)
@pytest.mark.parametrize("width", [60, 120])
def test_help_reads_as_prose(path: tuple[str, ...], width: int) -> None:
    result = CliRunner().invoke(
        app, [*path, "--help"], terminal_width=width, env={"COLUMNS": str(width)}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert not PLACEHOLDER.search(out), PLACEHOLDER.findall(out)
    assert not SOURCE_POINTER.search(out), SOURCE_POINTER.findall(out)
    assert "Usage:" in out


def test_paragraphs_wrap_at_the_terminal_and_marked_blocks_keep_their_lines() -> None:
    """Typer kept a docstring's own line breaks after its first paragraph: at 80 columns
    a sentence broke once at the terminal's edge and again where the source broke it."""
    result = CliRunner().invoke(
        app, ["session", "apply", "--help"], terminal_width=80, env={"COLUMNS": "80"}
    )
    lines = [line.strip() for line in result.output.splitlines()]
    assert "ended, so a second apply of the same file changes nothing. --dry-run prints" in lines
    assert "[session]" in lines and 'channel = "yourchannel"' in lines
