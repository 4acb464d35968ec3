"""Fleet test support: a Twitch IRC fake that chats on every joined channel, worker processes.

:class:`ChattyTwitch` sends message ``n`` of a channel at ``t0 + n / rate`` on every connection
that joined it, with the id ``<channel>-<n>``: two workers reading one channel get the same
messages with the same ids (as from Twitch), and :attr:`ChattyTwitch.sent` records which were
sent on any connection, so a test counts them in the session's stream.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from broker import keys
from broker.models import now_ms
from tests.support.platforms.twitch_irc import TwitchIrcServer, privmsg

__all__ = ["ChattyTwitch", "chat_ids", "spawn_worker", "stop_all", "worker_command", "worker_env"]


class _Inbox(asyncio.Queue[str]):
    channel = ""


@dataclass
class ChattyTwitch(TwitchIrcServer):
    """Every connection that joins ``#c`` gets ``c``'s messages at ``rate`` per second."""

    rate: float = 5.0
    sent: dict[str, set[int]] = field(default_factory=dict)
    sent_at: dict[str, dict[int, float]] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    open_connections: int = 0
    readers: dict[str, int] = field(default_factory=dict)
    """Open connections per channel now."""

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self.open_connections += 1
        inbox = _Inbox()
        reader = asyncio.create_task(self._read(ws, inbox))
        try:
            login = asyncio.create_task(self._login(ws, inbox))
            await asyncio.wait({login, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not login.done():  # the client left before joining: do not wait for it
                login.cancel()
            elif login.result():
                await self._chat(ws, inbox.channel, reader)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self.open_connections -= 1
            reader.cancel()
        return ws

    async def _read(self, ws: web.WebSocketResponse, inbox: asyncio.Queue[str]) -> None:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                for line in message.data.split("\r\n"):
                    if line.startswith("JOIN #") and isinstance(inbox, _Inbox):
                        inbox.channel = line[6:].strip()
                    if line:
                        await inbox.put(line)

    async def _chat(
        self, ws: web.WebSocketResponse, channel: str, reader: asyncio.Task[None]
    ) -> None:
        self.readers[channel] = self.readers.get(channel, 0) + 1
        try:
            await self._chat_on(ws, channel, reader)
        finally:
            self.readers[channel] -= 1

    async def _chat_on(
        self, ws: web.WebSocketResponse, channel: str, reader: asyncio.Task[None]
    ) -> None:
        n = int((time.monotonic() - self.t0) * self.rate) + 1
        sent = self.sent.setdefault(channel, set())
        sent_at = self.sent_at.setdefault(channel, {})
        while not ws.closed and not reader.done():
            await asyncio.sleep(max(0.0, self.t0 + n / self.rate - time.monotonic()))
            if ws.closed or reader.done():
                return
            await ws.send_str(privmsg(f"{channel}-{n}", f"m{n}", channel=channel, ts=now_ms()))
            sent.add(n)
            sent_at.setdefault(n, time.monotonic())
            n += 1


async def chat_ids(redis: Any, session_id: str) -> list[str]:
    """The ids of every chat message in the session's stream, in order (duplicates kept)."""
    entries = await redis.xrange(keys.stream(session_id))
    out = []
    for _, fields in entries:
        event = orjson.loads(fields[b"e"])
        if event["type"] == "chat.message":
            out.append(event["payload"]["id"])
    return out


def worker_env(redis_url: str, fleet: str, irc_url: str, **settings: object) -> dict[str, str]:
    """The environment of a worker process: Redis, fleet, the fake's URL, short timings."""
    env = {
        **os.environ,
        "VSTUDIO_REDIS_URL": redis_url,
        "VSTUDIO_FLEET": fleet,
        "VSTUDIO_TWITCH_IRC_URL": irc_url,
        "VSTUDIO_RECONNECT_INITIAL": "0.2",
        "VSTUDIO_RECONNECT_MAX": "1",
        "VSTUDIO_RECONNECT_ATTEMPTS": "100",
    }
    for name, value in settings.items():
        env[f"VSTUDIO_{name.upper()}"] = str(value)
    return env


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vstudio_cli.main", "worker", "--json", *args]


def spawn_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """A ``vstudio worker --json`` process (the caller stops or kills it); its log goes to a
    temporary file, so a chatty log never blocks it on a full pipe."""
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        worker_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    _LOGS[process.pid] = log
    return process


_LOGS: dict[int, Any] = {}


def stop_all(processes: list[subprocess.Popen[bytes]]) -> Iterator[str]:
    """Stop every process still running (SIGTERM, then SIGKILL); yield each one's stderr."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log = _LOGS.pop(process.pid)
        log.seek(0)
        yield log.read().decode(errors="replace")
        log.close()
