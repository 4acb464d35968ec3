"""How each part of a running ``vstudio up`` is doing: the server, Redis, each worker.

Read from the outside, as ``vstudio status`` and ``up``'s own live status both do: the
server's ``/readyz``, a Redis ``PING``, the workers' records in Redis (the fleet worker's record
and the health of each source it reads; a ``vstudio ingest`` worker's heartbeat), and whether
each child process named in the state file is still alive.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
from rich.table import Table
from rich.text import Text

from broker import connect
from broker.sources import SourceHealth, WorkerRecord
from ingest.fleet.registry import Registry
from ingest.heartbeat import read_records
from vstudio_cli.logfiles import last_problem

__all__ = ["HEALTHY", "PartStatus", "alive", "probe", "status_table"]

HEALTHY = {"up", "connected", "starting", "connecting", "resolving"}
"""States that are not a problem."""
DETAIL_WIDTH = 72
"""The table's detail is cut to this; the full reason is in the line ``up`` prints."""
COLOURS = {"up": "green", "connected": "green", "down": "red", "exited": "red", "failed": "red"}


@dataclass
class PartStatus:
    """One row: a part's name, its state in a word, msg/s for workers, and why if it is ill;
    a fleet worker's row lists the sources it reads (``{id, state, msgPerS, lastError}``)."""

    name: str
    state: str
    detail: str = ""
    rate: float | None = None
    received: int | None = None
    pid: int | None = None
    sources: list[dict[str, Any]] | None = None

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def wire(self) -> dict[str, Any]:
        return asdict(self)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except (OSError, IndexError):
        return True


async def _server(state: dict[str, Any], timeout: float) -> PartStatus:
    children: list[dict[str, Any]] = state.get("children", [])
    server = next((c for c in children if c["name"] == "server"), {})
    part = PartStatus("server", "starting", pid=server.get("pid"))
    url = state.get("localUrl") or state.get("url")
    if not url:
        return part
    certfile = state.get("certfile")
    trust = ssl.create_default_context(cafile=certfile) if certfile else None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(f"{url}/readyz", ssl=trust if trust else True) as response,
        ):
            if response.status == 200:
                part.state = "up"
                part.detail = state.get("url", url)
            else:
                part.state, part.detail = "unhealthy", f"/readyz answered HTTP {response.status}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        part.state, part.detail = "down", f"{url} does not answer ({type(exc).__name__})"
    return part


FleetSeen = tuple[dict[str, WorkerRecord], list[SourceHealth]]
"""What the fleet's registry says: live workers by id, and every reading's health."""


def fleet_part(part: PartStatus, seen: FleetSeen) -> None:
    """Fill a fleet worker's row from its record (found by pid on this host) and the health
    of what it reads: the worst reading's state, the sum of msg/s, the sources."""
    workers, health = seen
    host = socket.gethostname()
    record = next((w for w in workers.values() if w.pid == part.pid and w.host == host), None)
    if record is None:
        return  # not registered yet: still "starting"
    mine = sorted((h for h in health if h.owner == record.id), key=lambda h: h.source)
    part.sources = [
        {"id": h.source, "state": h.state, "msgPerS": h.msg_per_s, "lastError": h.last_error}
        for h in mine
    ]
    part.rate = round(sum(h.msg_per_s for h in mine), 2)
    ill = [h for h in mine if h.state not in HEALTHY]
    if ill:
        part.state = ill[0].state
        part.detail = f"{ill[0].source}: {ill[0].last_error}" if ill[0].last_error else ""
    elif mine:
        part.state = min((h.state for h in mine), key=lambda s: s == "connected")
        part.detail = "reading " + ", ".join(h.source for h in mine)
    else:
        part.state, part.detail = "up", "reading nothing yet"


async def _redis_and_workers(state: dict[str, Any], timeout: float) -> list[PartStatus]:
    redis = PartStatus("redis", "down", detail=str(state.get("redisShown", "")))
    records: list[dict[str, Any]] = []
    fleet: FleetSeen = ({}, [])
    try:
        client = await connect(str(state["redisUrl"]), attempts=1, timeout=timeout)
    except Exception as exc:  # BusUnavailable, or a URL that is not a URL
        redis.detail = f"{state.get('redisShown', '')} does not answer ({exc})".strip()
    else:
        try:
            redis.state = "up"
            records = await read_records(client, state.get("session"))
            if state.get("fleet"):
                registry = Registry(client, str(state["fleet"]))
                fleet = (await registry.live_workers(), await registry.health())
        finally:
            await client.aclose()
    parts = [redis]
    by_pid = {record.get("pid"): record for record in records}
    for child in state.get("children", []):
        if child["name"] == "server":
            continue
        part = PartStatus(child["name"], "starting", pid=child.get("pid"))
        record = by_pid.get(child.get("pid"))
        if not alive(child.get("pid")):
            part.state = "exited"
            part.detail = last_problem(Path(child["log"])) or f"see {child['log']}"
        elif child["name"] == "worker":
            fleet_part(part, fleet)
            if not part.healthy and not part.detail:  # say why, from its own last warning
                part.detail = last_problem(Path(child["log"])) or ""
        elif record is not None:
            part.state = str(record.get("state"))
            part.detail = str(record.get("detail") or "")
            if not part.healthy:  # say why, from the worker's own last warning
                part.detail = last_problem(Path(child["log"])) or part.detail
            part.rate = float(record.get("rate") or 0.0)
            part.received = int(record.get("received") or 0)
        parts.append(part)
    return parts


async def probe(state: dict[str, Any], timeout: float = 2.0) -> list[PartStatus]:
    """Every part of the ``up`` that wrote ``state``, asked at once."""
    server, rest = await asyncio.gather(_server(state, timeout), _redis_and_workers(state, timeout))
    return [server, *rest]


def _short(text: str, width: int = DETAIL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def status_table(parts: list[PartStatus]) -> Table:
    """A compact table: part, state, msg/s, detail."""
    table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    table.add_column("part")
    table.add_column("state")
    table.add_column("msg/s", justify="right")
    table.add_column("detail", no_wrap=True)
    for part in parts:
        colour = COLOURS.get(part.state, "green" if part.healthy else "yellow")
        table.add_row(
            part.name,
            Text(f"● {part.state}", style=colour),
            "" if part.rate is None else f"{part.rate:.1f}",
            Text(_short(part.detail), style="dim"),
        )
    return table
