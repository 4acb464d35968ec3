"""Reactions, summed across every server process into one ``reaction.burst`` per window.

Time is cut into windows of ``reaction_window_ms``. A reaction is counted with ``HINCRBY``
into its window's hash in Redis; each process remembers the windows it counted into and, once
a window has closed (plus a short grace for counts still in flight), tries to close it. Closing
is one script: ``SET NX`` on the window's done-marker, read and delete the hash. Exactly one
process wins and publishes the burst; a window without reactions publishes nothing. A count
that arrives after its window was closed goes into the next window (the count script checks
the marker and moves on to the first window still open), so no reaction is lost, only late.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from broker import keys
from broker.bus import Bus
from broker.models import (
    ErrorCode,
    MessageType,
    ProtocolError,
    ReactionBurst,
    ReactionSend,
    now_ms,
)
from broker.scripts import Script
from config import ServerSettings
from server.interactions.chat import require_open
from server.interactions.loops import pause, stop_loop
from server.interactions.registry import Action, Actor
from server.interactions.services import Services

__all__ = ["ReactionWindows", "allowed_emoji"]

log = logging.getLogger("vstudio.server.interactions.reactions")

VARIATION_SELECTOR = "\ufe0f"
KEEP_MS = 60_000
"""How long a window's hash and done-marker outlive it, in case no process closes it."""

COUNT_SCRIPT = """
-- KEYS: pairs (window hash, its done-marker) for the reaction's window and the ones after it
-- ARGV[1] emoji, ARGV[2] ms to keep. Counts into the first window not closed yet and returns
-- its offset, or -1 when all were closed (the caller reads the clock again and retries).
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('HINCRBY', KEYS[i], ARGV[1], 1)
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    return (i - 1) / 2
  end
end
return -1
"""
LOOKAHEAD = 8
"""Windows a count may move forward when its round trip was slow."""

CLOSE_SCRIPT = """
-- KEYS[1] window hash, KEYS[2] its done-marker; ARGV[1] ms to keep the marker
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {} end
local counts = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return counts
"""


def allowed_emoji(emoji: str, allowed: list[str]) -> str:
    """The allowed form of ``emoji`` (``❤`` and ``❤️`` are one), or 4006 listing the set."""
    bare = emoji.replace(VARIATION_SELECTOR, "")
    for candidate in allowed:
        if candidate.replace(VARIATION_SELECTOR, "") == bare:
            return candidate
    raise ProtocolError(
        ErrorCode.INVALID_MESSAGE,
        f"reaction {emoji!r} is not allowed here; use one of {' '.join(allowed)}",
    )


@dataclass
class ReactionWindows:
    """One process's part: count reactions and close the windows it counted into."""

    bus: Bus
    settings: ServerSettings
    pending: set[tuple[str, int]] = field(default_factory=set)
    closer: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        redis = self.bus.redis
        self._count = Script(redis, COUNT_SCRIPT)
        self._close = Script(redis, CLOSE_SCRIPT)

    @property
    def window_ms(self) -> int:
        return self.settings.reaction_window_ms

    @property
    def grace_ms(self) -> int:
        """Wait after a window ends before closing it, for counts still on their way."""
        return max(20, self.window_ms // 5)

    async def count(self, session_id: str, emoji: str) -> None:
        """Count one reaction into its window, or the first later one still open."""
        for _ in range(3):
            window = now_ms() // self.window_ms
            candidates = [
                key
                for later in range(window, window + LOOKAHEAD)
                for key in (
                    keys.reaction_window(session_id, later),
                    keys.reaction_window_done(session_id, later),
                )
            ]
            offset = int(await self._count(keys=candidates, args=[emoji, KEEP_MS]))
            if offset >= 0:
                self.pending.add((session_id, window + offset))
                return
        log.warning(  # another process closed windows seconds ahead: its clock runs fast
            "reaction dropped: every window ahead was closed already",
            extra={"session": session_id},
        )

    async def close(self, session_id: str, window: int) -> dict[str, int] | None:
        """Close one window; its counts if this process won it and it had any."""
        flat = await self._close(
            keys=[
                keys.reaction_window(session_id, window),
                keys.reaction_window_done(session_id, window),
            ],
            args=[KEEP_MS],
        )
        if not flat:
            return None
        return {
            flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2) if int(flat[i + 1])
        } or None

    async def close_due(self, *, everything: bool = False) -> None:
        """Close and publish every pending window that has ended (or all, when stopping)."""
        now = now_ms()
        due = [
            (session_id, window)
            for session_id, window in self.pending
            if everything or (window + 1) * self.window_ms + self.grace_ms <= now
        ]
        for session_id, window in due:
            self.pending.discard((session_id, window))
            counts = await self.close(session_id, window)
            if counts:
                burst = ReactionBurst(counts=counts, window=self.window_ms)
                await self.bus.publish(
                    session_id, "events", MessageType.REACTION_BURST, burst.wire()
                )

    def start(self) -> None:
        self.stopping.clear()
        self.closer = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.stopping.set()
        if self.closer is not None:
            await stop_loop(self.closer)
        await self.close_due(everything=True)

    async def _run(self) -> None:
        tick = max(0.005, self.window_ms / 5000)
        while not self.stopping.is_set():
            try:
                await self.close_due()
            except Exception:
                log.exception("closing reaction windows failed")
            await pause(self.stopping, tick)


async def send_reaction(services: Services, actor: Actor, reaction: ReactionSend) -> dict[str, Any]:
    emoji = allowed_emoji(reaction.emoji, services.settings.allowed_reactions)
    async with services.redis_gate:
        session = await services.sessions.get(actor.session_id)
        require_open(session)
        if not session.reactions_enabled:
            raise ProtocolError(ErrorCode.FORBIDDEN, "reactions are turned off in this session")
        await services.reactions.count(actor.session_id, emoji)
    return {"emoji": emoji}


ACTIONS = (Action(MessageType.REACTION_SEND, send_reaction),)
"""The client messages this module performs."""
