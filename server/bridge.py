"""The seed's own channels, bridged into the bus, and the global announcements.

Our channels carry the session id as a Redis Cluster hash tag (``vstudio:session:{abc}:chat``)
so that the publish script may append to the session's stream and publish in one slot. A
worker or an operator written from the seed alone publishes on the seed's form instead::

    PUBLISH vstudio:session:abc:chat '{"type": "chat.message", "payload": {...}}'

Every server process pattern-subscribes to those channels (the glob leaves ours out) and to
``vstudio:global:announcements``. A seed-format publish reaches every process, and exactly one
republishes it through :meth:`broker.bus.Bus.publish_many`, so it gets a stream id, lands in
the history and reaches the session's clients once: a message or platform event is deduped by
its ``id`` inside the publish script (the same key an ingest worker's copy uses), anything
without an id by a short ``SET NX`` claim on a hash of the channel and the raw bytes; the claim
holds the winner's token, so the winner (alone) also republishes a deliberate repeat.

Accepted on any of the three seed channels: ``chat.message`` (NormalizedChatMessage),
``chat.aggregate`` (``{messages: [...]}``), ``chat.delete``, ``platform.event`` and
``announcement`` (``{text}``). Types that change session state (polls, votes, session
lifecycle, tips) must go through the REST API, which checks who asks; they are dropped. Any
malformed publish (not JSON, not ``{type, payload}``, an invalid payload, an unknown or ended
session) is logged with the reason and dropped; nothing a publisher sends stops the loop.

A global announcement is no session's event: each process writes it to every local client of
every session (or of ``payload.sessionId`` only), with no stream id. Pub/sub keeps nothing, so a
publish made while a process is reconnecting to Redis does not reach that process's clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from typing import Any

import orjson
from pydantic import ValidationError

from broker import keys
from broker.bus import Bus, OutgoingEvent, StreamKind
from broker.connection import TRANSIENT_ERRORS, publish_counted
from broker.models import (
    Announcement,
    ChatAggregate,
    ChatDelete,
    MessageType,
    NormalizedChatMessage,
    PlatformEvent,
    SessionStatus,
    now_ms,
)
from broker.tasks import stop_task
from server.fanout.hub import Hub
from server.interactions.sessions import SessionStore

__all__ = ["CLAIM_TTL", "SeedBridge", "announcement_frame", "publish_global"]

log = logging.getLogger("vstudio.server.bridge")

CLAIM_TTL = 30
"""Seconds a process's claim on an id-less publish lasts: every process receives a publish
within milliseconds, so this only has to outlast that (and an identical publish later is new)."""
RETRIES = 3
"""Attempts at republishing one publish when Redis drops a connection meanwhile."""
KNOWN_FOR = 5.0
"""Seconds a live session found once is trusted without reading it again."""


class Dropped(Exception):
    """A publish the bridge refuses; the message says why."""


def _with_platform_prefix(payload: dict[str, Any]) -> dict[str, Any]:
    """The seed's ``id`` is any string; ours is ``<platform>:<platform id>``, so add the prefix."""
    message_id, platform = payload.get("id"), payload.get("platform")
    if isinstance(message_id, str) and isinstance(platform, str):
        if not message_id.startswith(f"{platform}:"):
            return {**payload, "id": f"{platform}:{message_id}"}
    return payload


def _events(
    session_id: str, type_: str, payload: dict[str, Any], timestamp: int | None
) -> tuple[StreamKind, list[OutgoingEvent]]:
    """The bus events a seed-format publish becomes (as ingest.batching maps a worker's)."""
    if type_ == MessageType.CHAT_MESSAGE:
        message = NormalizedChatMessage.model_validate(_with_platform_prefix(payload))
        return "chat", [OutgoingEvent(type_, message.wire(), message.id, timestamp)]
    if type_ == MessageType.CHAT_AGGREGATE:
        raw = payload.get("messages")
        if isinstance(raw, list):
            payload = {
                "messages": [_with_platform_prefix(m) if isinstance(m, dict) else m for m in raw]
            }
        batch = ChatAggregate.model_validate(payload)
        return "chat", [
            OutgoingEvent(MessageType.CHAT_MESSAGE, m.wire(), m.id, timestamp)
            for m in batch.messages
        ]
    if type_ == MessageType.CHAT_DELETE:
        delete = ChatDelete.model_validate(payload)
        dedupe = f"delete:{delete.message_id}" if delete.message_id else None
        return "chat", [OutgoingEvent(type_, delete.wire(), dedupe, timestamp)]
    if type_ == MessageType.PLATFORM_EVENT:
        event = PlatformEvent.model_validate(_with_platform_prefix(payload))
        return "events", [OutgoingEvent(type_, event.wire(), event.id, timestamp)]
    if type_ == MessageType.ANNOUNCEMENT:
        notice = Announcement.model_validate({**payload, "sessionId": session_id})
        return "events", [OutgoingEvent(type_, notice.wire(), None, timestamp)]
    raise Dropped(
        f"type {type_!r} is not accepted on the seed channels (session state changes go "
        "through the REST API)"
    )


def _envelope(data: bytes) -> tuple[str, dict[str, Any], int | None]:
    """``{type, payload, timestamp?}`` of a publish, or :class:`Dropped`."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Dropped(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Dropped("not a JSON object {type, payload}")
    type_, payload, timestamp = body.get("type"), body.get("payload"), body.get("timestamp")
    if not isinstance(type_, str) or not isinstance(payload, dict):
        raise Dropped("needs a string 'type' and an object 'payload'")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp <= 0:
        timestamp = None
    return type_, payload, timestamp


def announcement_frame(notice: Announcement, timestamp: int | None = None) -> bytes:
    """The published form of a global announcement: ``{type, payload, timestamp}``."""
    return orjson.dumps(
        {
            "type": MessageType.ANNOUNCEMENT,
            "payload": notice.wire(),
            "timestamp": timestamp or now_ms(),
        }
    )


async def publish_global(bus: Bus, notice: Announcement) -> int:
    """Publish an announcement on ``vstudio:global:announcements``; how many processes got it."""
    return await publish_counted(bus.redis, keys.GLOBAL_ANNOUNCEMENTS, announcement_frame(notice))


class SeedBridge:
    """One process's subscription to the seed's channels and to the global announcements."""

    def __init__(
        self, bus: Bus, sessions: SessionStore, hub: Hub, *, claim_ttl: int = CLAIM_TTL
    ) -> None:
        self.bus = bus
        self.sessions = sessions
        self.hub = hub
        self.claim_ttl = claim_ttl
        self.subscribed = asyncio.Event()
        self._known: dict[str, float] = {}
        self._token = secrets.token_bytes(8)
        """This process's mark on its claims, so a retry recognises its own."""
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait: float = 5.0) -> None:
        """Subscribe in the background; wait up to ``wait`` seconds for the first subscription."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="seed-bridge")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), wait)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.bus.redis.pubsub()
            try:
                # announcements first: on a cluster that puts this connection on the node
                # PUBLISH goes to, whose answer then counts every process (a seed-format publish
                # reaches every node, so the pattern may be served by any)
                await pubsub.subscribe(keys.GLOBAL_ANNOUNCEMENTS)
                await pubsub.psubscribe(keys.SEED_CHANNEL_PATTERN)
                self.subscribed.set()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] in ("message", "pmessage"):
                        await self.on_message(message["channel"], message["data"])
            except TRANSIENT_ERRORS as exc:
                self.subscribed.clear()
                log.warning("seed bridge lost its subscription (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.bus.resubscribe_max_backoff)

    async def on_message(self, channel: bytes | str, data: bytes | str) -> str:
        """Handle one publish; what became of it (``bridged``, ``duplicate``, ``dropped``...)."""
        name = channel.decode(errors="replace") if isinstance(channel, bytes) else channel
        raw = data.encode() if isinstance(data, str) else data
        try:
            if name == keys.GLOBAL_ANNOUNCEMENTS:
                return self._announce(raw)
            target = keys.seed_channel(name)
            if target is None:
                return "ignored"  # ours (hash-tagged), or not a session channel at all
            return await self._bridge(name, target[0], raw)
        except Dropped as exc:
            log.warning(
                "seed-format publish dropped: %s",
                exc,
                extra={"event": "bridge_dropped", "channel": name, "reason": str(exc)},
            )
            return "dropped"
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "payload"
            reason = f"invalid payload: {where}: {error['msg']}"
            log.warning(
                "seed-format publish dropped: %s",
                reason,
                extra={"event": "bridge_dropped", "channel": name, "reason": reason},
            )
            return "dropped"
        except Exception:
            log.exception("seed-format publish failed", extra={"channel": name})
            return "failed"

    async def _bridge(self, channel: str, session_id: str, raw: bytes) -> str:
        type_, payload, timestamp = _envelope(raw)
        kind, events = _events(session_id, type_, payload, timestamp)
        for attempt in range(RETRIES):  # the pool's first command after a Redis restart fails
            try:
                return await self._republish(channel, session_id, raw, kind, events)
            except TRANSIENT_ERRORS:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def _republish(
        self,
        channel: str,
        session_id: str,
        raw: bytes,
        kind: StreamKind,
        events: list[OutgoingEvent],
    ) -> str:
        """Claim and publish; safe to repeat (the claim is this process's own, ids dedupe)."""
        await self._check_session(session_id)
        if any(event.dedupe_id is None for event in events):
            digest = hashlib.sha256(channel.encode() + b"\n" + raw).hexdigest()
            claim = keys.bridge_claim(session_id, digest)
            redis = self.bus.redis
            if not await redis.set(claim, self._token, nx=True, ex=self.claim_ttl):
                if await redis.get(claim) != self._token:
                    return "duplicate"  # another process bridges it
        type_ = events[0].type
        ids = await self.bus.publish_many(session_id, kind, events)
        if all(event_id is None for event_id in ids):
            return "duplicate"
        log.debug("bridged %s", type_, extra={"session": session_id, "ids": ids})
        return "bridged"

    async def _check_session(self, session_id: str) -> None:
        now = time.monotonic()
        if self._known.get(session_id, 0.0) > now:
            return
        session = await self.sessions.find(session_id)
        if session is None:
            raise Dropped(f"unknown session {session_id!r}")
        if session.status == SessionStatus.ENDED:
            raise Dropped(f"session {session_id!r} has ended")
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[session_id] = now + KNOWN_FOR

    def _announce(self, raw: bytes) -> str:
        """A global announcement: JSON ``{type: "announcement", payload: {text}}``, the payload
        alone, or plain text."""
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")  # redis-cli PUBLISH ... "plain words"
        timestamp = None
        if isinstance(body, str):
            notice = Announcement(text=body.strip())
        elif isinstance(body, dict) and "payload" not in body and "text" in body:
            notice = Announcement.model_validate(body)  # the payload alone: {text, ...}
        elif isinstance(body, dict) and isinstance(body.get("payload"), dict):
            if body.get("type") != MessageType.ANNOUNCEMENT:
                raise Dropped(f"type {body.get('type')!r} is not an announcement")
            notice = Announcement.model_validate(body["payload"])
            stamp = body.get("timestamp")
            timestamp = stamp if isinstance(stamp, int) and stamp > 0 else None
        else:
            raise Dropped("an announcement is {type: 'announcement', payload: {text}} or text")
        frame = announcement_frame(notice, timestamp)
        sent = self.hub.broadcast(frame, MessageType.ANNOUNCEMENT, notice.wire(), notice.session_id)
        log.info(
            "announcement sent to %d clients",
            sent,
            extra={"event": "announcement", "session": notice.session_id, "clients": sent},
        )
        return "announced"
