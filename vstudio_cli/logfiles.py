"""The log files of ``vstudio up`` (``DATA/logs/PART.log``), read for people.

Every part ``up`` starts writes JSON log lines to its own file; nothing of it reaches the
terminal raw. This module names the parts, turns a JSON line into one readable line, finds a
part's last problem (what ``up`` prints when a worker gives up) and follows files as they grow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson

__all__ = ["LOG_DIR", "follow", "last_problem", "log_parts", "readable", "tail"]

LOG_DIR = "logs"
PROBLEM_LEVELS = {"error", "critical", "warning"}


def log_parts(data_dir: Path) -> dict[str, Path]:
    """Each part's name and log file, sorted by name."""
    folder = Path(data_dir) / LOG_DIR
    return {path.stem: path for path in sorted(folder.glob("*.log"))}


def readable(line: str) -> str:
    """``12:00:01 warning  message (k=v ...)`` for a JSON log line; other lines as they are."""
    text = line.rstrip("\n")
    if not text.startswith("{"):
        return text
    try:
        entry = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if not isinstance(entry, dict):
        return text
    if entry.get("event") in ("status", "stopped") and "state" in entry:  # a worker's status
        rate = entry.get("rate", 0.0)
        return (
            f"{entry['event']}: {entry.get('state')}, {rate:.1f} msg/s, "
            f"{entry.get('received', 0)} received"
            + (f" ({entry['detail']})" if entry.get("detail") else "")
        )
    if entry.get("event") in ("status", "stopped") and "readings" in entry:  # a fleet worker's
        return (
            f"{entry['event']}: reading {entry['readings']} of {entry.get('wanted', 0)} wanted, "
            f"{entry.get('rate', 0.0):.1f} msg/s, {entry.get('published', 0)} published"
        )
    stamp = str(entry.get("timestamp", ""))[11:19]
    level = str(entry.get("level", "")).lower()
    message = str(entry.get("message") or entry.get("event") or "")
    return f"{stamp} {level:<7} {message}".strip()


def last_problem(path: Path, scan_bytes: int = 64_000) -> str | None:
    """The message of the last warning or error in a log file, as one line, if any."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - scan_bytes))
            lines = file.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        if not line.startswith("{"):
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and str(entry.get("level", "")).lower() in PROBLEM_LEVELS:
            return " ".join(str(entry.get("message") or entry.get("event")).split())
    return None


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file (all of them for ``lines <= 0``)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    found = text.splitlines()
    return found if lines <= 0 else found[-lines:]


def follow(paths: dict[str, Path], poll: float = 0.3) -> Iterator[tuple[str, str]]:
    """``(part, line)`` for every line appended to ``paths`` from this call on, forever."""
    offsets = {name: (path.stat().st_size if path.exists() else 0) for name, path in paths.items()}
    return _appended(paths, offsets, poll)


def _appended(
    paths: dict[str, Path], offsets: dict[str, int], poll: float
) -> Iterator[tuple[str, str]]:
    partial = dict.fromkeys(paths, "")
    while True:
        quiet = True
        for name, path in paths.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[name]:  # truncated or replaced: start over
                offsets[name] = 0
            if size == offsets[name]:
                continue
            with path.open("rb") as file:
                file.seek(offsets[name])
                chunk = file.read(size - offsets[name])
            offsets[name] = size
            quiet = False
            text = partial[name] + chunk.decode(errors="replace")
            *complete, partial[name] = text.split("\n")
            for line in complete:
                yield name, line
        if quiet:
            time.sleep(poll)
