"""``vstudio doctor``: is this machine ready to run V Studio? A table and a verdict."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from broker import BusUnavailable, EmbeddedRedis, EmbeddedServerError, connect
from broker.connection import is_cluster_url, redact_url
from config import BrokerSettings, IngestSettings, ServerSettings

Status = Literal["ok", "warn", "fail"]

OPTIONAL_LIBRARIES = {
    "TikTokLive": "TikTok chat (extra 'tiktok')",
    "twitchio": "Twitch EventSub mode",
    "discord.py": "Discord chat",
}

MIN_REDIS = (6, 2)
"""Exclusive XRANGE ranges need Redis 6.2; Valkey reports 7.2 compatibility or newer."""
MIN_REDIS_CLUSTER = (7, 0)
"""A cluster carries session events on sharded pub/sub (``SPUBLISH``), new in Redis 7.0."""


@dataclass
class Check:
    name: str
    status: Status
    detail: str


async def redis_version(url: str, attempts: int = 2) -> tuple[str, str]:
    """(server name, version) of the Redis-compatible server at ``url``."""
    client = await connect(url, attempts=attempts, timeout=2.0)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    if "valkey_version" in info:
        return "Valkey", str(info["valkey_version"])
    return "Redis", str(info["redis_version"])


def check_version(name: str, found: str, where: str) -> Check:
    numbers = tuple(int(part) for part in found.split(".")[:2])
    if name == "Redis" and is_cluster_url(where) and numbers < MIN_REDIS_CLUSTER:
        return Check("redis", "fail", f"{name} {found} at {where}: a cluster needs 7.0 or newer")
    if name == "Redis" and numbers < MIN_REDIS:
        return Check("redis", "fail", f"{name} {found} at {where}: 6.2 or newer is needed")
    return Check("redis", "ok", f"{name} {found} answers at {where}")


def check_settings() -> tuple[list[Check], BrokerSettings | None]:
    checks = []
    broker = None
    for cls in (BrokerSettings, ServerSettings, IngestSettings):
        try:
            settings = cls()
        except (ValidationError, ValueError) as exc:
            checks.append(Check(f"settings ({cls.section})", "fail", str(exc).splitlines()[0]))
            continue
        checks.append(Check(f"settings ({cls.section})", "ok", "valid"))
        if isinstance(settings, BrokerSettings):
            broker = settings
    return checks, broker


def check_redis(broker: BrokerSettings) -> list[Check]:
    if broker.redis_url:
        try:
            name, found = asyncio.run(redis_version(broker.redis_url))
        except BusUnavailable as exc:
            return [Check("redis", "fail", str(exc))]
        return [check_version(name, found, redact_url(broker.redis_url))]
    checks = [Check("redis", "ok", "no Redis URL set: the embedded Valkey server will be used")]
    with tempfile.TemporaryDirectory(prefix="vstudio-doctor-") as scratch:
        try:
            with EmbeddedRedis(Path(scratch)) as embedded:
                name, found = asyncio.run(redis_version(embedded.url))
            checks.append(Check("embedded server", "ok", f"{name} {found} starts and answers"))
        except (EmbeddedServerError, BusUnavailable) as exc:
            checks.append(Check("embedded server", "fail", str(exc)))
    stale = EmbeddedRedis(broker.data_dir).stale()
    if stale:
        checks.append(
            Check(
                "data folder",
                "ok",
                f"{broker.data_dir}: its embedded server is running (pid {stale['pid']}, "
                f"port {stale['port']}); commands run now use it",
            )
        )
    else:
        checks.append(Check("data folder", "ok", f"{broker.data_dir}"))
    return checks


def check_libraries() -> list[Check]:
    checks = []
    for package, purpose in OPTIONAL_LIBRARIES.items():
        try:
            found = importlib.metadata.version(package)
            checks.append(Check(package, "ok", f"{found} installed: {purpose}"))
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(package, "warn", f"not installed; needed only for {purpose}"))
    return checks


def run_checks() -> list[Check]:
    """Every check, in the order a person would fix them."""
    python = ".".join(map(str, sys.version_info[:3]))
    checks = [Check("python", "ok", python)]
    setting_checks, broker = check_settings()
    checks += setting_checks
    if broker is not None:
        checks += check_redis(broker)
    return checks + check_libraries()


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Check Redis (or the embedded server), settings and optional platform libraries.

    Exit code 0 when everything needed works (warnings allowed), 1 when something fails.
    """
    checks = run_checks()
    failed = [check for check in checks if check.status == "fail"]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [asdict(c) for c in checks]}))
    else:
        table = Table(title="vstudio doctor")
        table.add_column("check")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in checks:
            table.add_row(check.name, f"[{colours[check.status]}]{check.status}", check.detail)
        console = Console()
        console.print(table)
        if failed:
            console.print(f"[bold red]Not ready:[/] {len(failed)} check(s) failed.")
        else:
            console.print("[bold green]Ready:[/] this machine can run V Studio realtime.")
    if failed:
        raise typer.Exit(1)
