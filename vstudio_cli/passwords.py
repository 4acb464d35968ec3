"""Asking for a password: hidden at a terminal, read from standard input when it is piped.

``getpass`` reads the controlling terminal even when standard input is a pipe, so
``printf 'pw\\npw\\n' | vstudio user add ann`` run from a terminal would wait for typing
instead of reading the pipe. Piped input is taken as the password line (and, where a
confirmation is asked for, an optional second line that must match).
"""

from __future__ import annotations

import sys

import typer

__all__ = ["ask_password"]


def ask_password(prompt: str, *, confirm: bool = False) -> str:
    """The password typed (hidden) at a terminal, or the first line of piped input."""
    if sys.stdin.isatty():
        return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))
    lines = sys.stdin.read().splitlines()
    if not lines or not lines[0]:
        raise typer.BadParameter("no password on standard input", param_hint="password")
    if confirm and len(lines) > 1 and lines[1] != lines[0]:
        raise typer.BadParameter("the two password lines differ", param_hint="password")
    return lines[0]
