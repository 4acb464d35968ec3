"""Fleet test support: a Twitch IRC fake that chats on every joined channel, worker processes.

:class:`ChattyTwitch` sends message ``n`` of a channel at ``t0 + n / rate`` on every connection
that joined it (one channel per connection, or many on a pooled one), with the id
``<channel>-<n>``: two workers reading one channel get the same messages with the same ids (as
from Twitch), and :attr:`ChattyTwitch.sent` records which were sent on any connection, so a
test counts them in the session's stream.
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

from broker import keys
from broker.models import now_ms
from tests.support.platforms.twitch_irc import Connection, TwitchIrcServer, privmsg

__all__ = ["ChattyTwitch", "chat_ids", "spawn_worker", "stop_all", "worker_command", "worker_env"]


@dataclass
class ChattyTwitch(TwitchIrcServer):
    """Every connection that joined ``#c`` gets ``c``'s messages at ``rate`` per second."""

    rate: float = 5.0
    sent: dict[str, set[int]] = field(default_factory=dict)
    sent_at: dict[str, dict[int, float]] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    _tickers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def readers(self) -> dict[str, int]:
        """Open connections that joined each channel, now."""
        counts = dict.fromkeys(self.sent, 0)
        for conn in self.open.values():
            for channel in conn.joined:
                counts[channel] = counts.get(channel, 0) + 1
        return counts

    @property
    def open_connections(self) -> int:
        return len(self.open)

    async def stop(self) -> None:
        for ticker in self._tickers.values():
            ticker.cancel()
        await super().stop()

    async def _join(self, conn: Connection, channel: str) -> None:
        await super()._join(conn, channel)
        if channel not in self._tickers:
            self._tickers[channel] = asyncio.create_task(self._chat(channel))

    async def _chat(self, channel: str) -> None:
        n = int((time.monotonic() - self.t0) * self.rate) + 1
        sent = self.sent.setdefault(channel, set())
        sent_at = self.sent_at.setdefault(channel, {})
        while True:
            await asyncio.sleep(max(0.0, self.t0 + n / self.rate - time.monotonic()))
            line = privmsg(f"{channel}-{n}", f"m{n}", channel=channel, ts=now_ms()) + "\r\n"
            delivered = False
            for conn in list(self.open.values()):
                if channel in conn.joined and not conn.ws.closed:
                    try:
                        await conn.ws.send_str(line)
                        delivered = True
                    except (ConnectionError, RuntimeError):
                        pass
            if delivered:
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
