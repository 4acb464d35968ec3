"""How ``--help`` shows options: as prose a person reads, not Python type names.

Typer shows a type placeholder after every option, ``<bool>`` for a flag (which takes no value)
and ``<list[str]>`` for a repeatable option. :class:`HelpfulGroup`, the root command's class,
goes over the whole command tree when it runs (Typer adds the completion options and click the
``--help`` option only by then): flags get no placeholder, a repeatable option shows its item
type followed by ``...``, and the paragraphs of a command's help are joined into lines that
the terminal's width wraps (Typer kept the docstring's own line breaks after the first
paragraph, so narrow terminals showed ragged text). A paragraph that starts with ``\b`` keeps
its lines, as in click.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["HelpfulGroup", "commands"]


def commands(root: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command under ``root`` (itself first) with the words that reach it."""
    yield path, root
    for name, command in sorted(getattr(root, "commands", {}).items()):
        yield from commands(command, (*path, name))


def reflow(text: str) -> str:
    """``text`` with each paragraph on one line, except those marked ``\b`` (kept, unmarked)."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):
            paragraphs.append(paragraph[1:].strip("\n"))
        else:
            paragraphs.append(" ".join(paragraph.split()))
    return "\n\n".join(paragraphs)


def tidy(root: Any) -> None:
    """Set the placeholders of every option under ``root`` and reflow every command's help
    (see the module's docstring)."""
    for _, command in commands(root):
        if command.help:
            command.help = reflow(command.help)
        help_option = command.get_help_option(typer.Context(command))
        for param in [*command.params, *([help_option] if help_option else [])]:
            if param.metavar is not None:
                continue
            if param.param_type_name == "argument" and param.nargs == -1:
                # "part..." already says it repeats; Typer would add "<list[str]>" beside it.
                shown = param.display_type(None).replace("list[", "").replace("]>", ">")
                param.display_type_rich = lambda ctx, shown=shown: (
                    shown
                )  # per-instance: Typer has no hook
                continue
            if param.param_type_name != "option":
                continue
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.multiple:
                shown = param.display_type(None)  # "<list[str]>"
                param.metavar = shown.replace("list[", "").replace("]>", ">") + "..."


class HelpfulGroup(TyperGroup):
    """The ``vstudio`` command: its tree's help is tidied before it runs."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        tidy(self)
        return super().main(*args, **kwargs)
