"""Log output for every part: JSON lines for machines, or rich text for people.

JSON is the default whenever stderr is not a terminal (a container, a pipe, a file, systemd),
rich text when a person watches it. A JSON line has the seed's fields: ``level``, ``event``
(the extra ``event``, else the message template), the extras (``session``/``user`` are written
as the seed's ``sessionId``/``userId``), an ISO-8601 UTC ``timestamp``, then ``logger`` and the
formatted ``message``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonLineFormatter", "configure_logging"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
SEED_NAMES = {"session": "sessionId", "user": "userId"}
"""Extras the code names briefly, written under the seed's names."""


def iso_timestamp(created: float) -> str:
    """``2024-11-01T12:00:00.123Z``: ISO-8601 in UTC, as the seed's log line."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: ``level``, ``event``, extras, ``timestamp``, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        event = record.__dict__.get("event")
        entry: dict[str, Any] = {
            "level": record.levelname.lower(),
            "event": event or (record.msg if isinstance(record.msg, str) else message),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name != "event":
                entry[SEED_NAMES.get(name, name)] = value
        entry["timestamp"] = iso_timestamp(record.created)
        entry["logger"] = record.name
        entry["message"] = message
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(*, json_lines: bool | None = None, level: str = "INFO") -> None:
    """Send logs to stderr, as JSON lines or as readable text.

    ``json_lines=None`` picks JSON unless stderr is a terminal.
    """
    if json_lines is None:
        isatty = getattr(sys.stderr, "isatty", None)
        json_lines = not (isatty is not None and isatty())
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLineFormatter())
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
