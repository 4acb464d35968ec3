"""A pure IRCv3 line parser: tags, prefix, command, parameters. No I/O.

Follows the IRCv3 message-tags specification (``@key=value;key2 :prefix COMMAND a b :trail``)
including the escaping of tag values (``\\:`` ``\\s`` ``\\\\`` ``\\r`` ``\\n``). A line it cannot
make sense of raises :class:`IrcParseError` naming what is wrong; nothing else escapes, so a
reader can skip the line and go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "IrcMessage",
    "IrcParseError",
    "format_line",
    "parse_line",
    "parse_tags",
    "split_lines",
    "unescape_tag_value",
]

MAX_LINE = 16_384
"""Twitch lines stay far below this (512 bytes of message plus up to 8 KB of tags)."""

_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class IrcParseError(ValueError):
    """A line that is not a valid IRC message."""


@dataclass(frozen=True, slots=True)
class IrcMessage:
    """One IRC message; ``params`` includes the trailing parameter as its last item."""

    command: str
    params: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    prefix: str | None = None

    @property
    def nick(self) -> str | None:
        """The nick of a ``nick!user@host`` prefix (a server name has no ``!``)."""
        if self.prefix is None:
            return None
        return self.prefix.split("!", 1)[0]

    @property
    def trailing(self) -> str:
        """The last parameter, or ``""``."""
        return self.params[-1] if self.params else ""


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag escaping; an unknown escape drops the backslash, a lone one at the end too."""
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, "")
        out.append(_ESCAPES.get(following, following))
    return "".join(out)


def parse_tags(raw: str) -> dict[str, str]:
    """``a=1;b=x\\sy;c`` -> ``{"a": "1", "b": "x y", "c": ""}``; a later duplicate key wins."""
    tags: dict[str, str] = {}
    for item in raw.split(";"):
        key, _, value = item.partition("=")
        if not key:
            if item:
                raise IrcParseError(f"tag without a name in {raw[:80]!r}")
            continue
        tags[key] = unescape_tag_value(value) if "\\" in value else value
    return tags


def _valid_command(command: str) -> bool:
    if command.isdigit():
        return len(command) == 3
    return command.isascii() and command.isalpha()


def parse_line(line: str) -> IrcMessage:
    """Parse one line (with or without its CR LF) into an :class:`IrcMessage`."""
    line = line.rstrip("\r\n")
    if not line.strip(" "):
        raise IrcParseError("empty line")
    if len(line) > MAX_LINE:
        raise IrcParseError(f"line of {len(line)} characters is longer than {MAX_LINE}")
    if "\0" in line:
        raise IrcParseError("line contains a NUL character")
    rest = line
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw_tags, _, rest = rest[1:].partition(" ")
        tags = parse_tags(raw_tags)
        rest = rest.lstrip(" ")
    prefix: str | None = None
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        if not prefix:
            raise IrcParseError("empty prefix")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):
        raise IrcParseError(f"no command before the trailing parameter in {line[:80]!r}")
    words = rest.split()
    if not words:
        raise IrcParseError(f"no command in {line[:80]!r}")
    command, params = words[0], words[1:]
    if not _valid_command(command):
        raise IrcParseError(f"invalid command {command[:40]!r}")
    if trailing is not None:
        params.append(trailing)
    return IrcMessage(command.upper(), tuple(params), tags, prefix)


def split_lines(data: str) -> list[str]:
    """The lines of one WebSocket frame (Twitch may put several in one), without blanks."""
    return [line for line in data.split("\r\n") if line.strip()]


def format_line(command: str, *params: str) -> str:
    """An outgoing line; the last parameter becomes trailing when it needs to be."""
    if not params:
        return command
    *middle, last = params
    for param in middle:
        if not param or " " in param or param.startswith(":"):
            raise ValueError(f"middle parameter {param!r} must be one non-empty word")
    if not last or " " in last or last.startswith(":"):
        last = ":" + last
    return " ".join([command, *middle, last])
