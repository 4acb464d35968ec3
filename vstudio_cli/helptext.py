"""How ``--help`` shows options: as prose a person reads, not Python type names.

Typer shows a type placeholder after every option, ``<bool>`` for a flag (which takes no value)
and ``<list[str]>`` for a repeatable option. :class:`HelpfulGroup`, the root command's class,
goes over the whole command tree when it runs (Typer adds the completion options and click the
``--help`` option only by then): flags get no placeholder, a repeatable option shows its item
type followed by ``...``.
"""

from __future__ import annotations

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


def tidy(root: Any) -> None:
    """Set the placeholders of every option under ``root`` (see the module's docstring)."""
    for _, command in commands(root):
        help_option = command.get_help_option(typer.Context(command))
        for param in [*command.params, *([help_option] if help_option else [])]:
            if param.metavar is not None or param.param_type_name != "option":
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
