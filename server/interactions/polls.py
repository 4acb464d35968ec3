"""Polls: create, update, end, vote, throttled results, and the auto-end at ``endsAt``.

Every rule that must hold across server processes is one Lua script on the poll's keys:
one active poll per session (create), question/options frozen after the first vote (update),
one vote per user per poll, or per option with ``allowMultiple`` (vote, counted in batches by
:mod:`server.interactions.ballots`), and the end done
exactly once whoever triggers it (end). The process whose end script succeeds is the one that
publishes ``poll.end`` and the final ``poll.results``.

Live tallies travel as ``poll.update {pollId, results, totalVotes}`` (the seed's SSE example);
``poll.results`` is only the final tally, once, when the poll ends. An edit of the poll is a
``poll.update`` too, carrying the whole poll (``id``, ``question``, ``options``...).

Tallies are broadcast at most ``poll_results_per_second`` times per poll across all processes:
a shared ``SET NX PX`` slot decides who may broadcast now; every process that accepted a vote
keeps a trailing flush pending until a broadcast has covered it, so the last votes reach
clients within one interval. While votes keep coming (a storm), a tally waits until the oldest
vote it would be the first to show is ``poll_results_busy_ms`` old, or until no vote has come
for ``poll_results_quiet_ms``: each tally is a write to every viewer, so a one-second storm of
10,000 votes to 10,000 viewers wrote 40,000 tallies at 4 a second, and its votes show about as
soon (issue 17). The times are the poll hash's ``dirtyAt`` and ``lastVoteAt``, kept by the
vote script, so every process paces by the same clock.

Error codes: 4006 for a request the poll's state refuses (unknown poll, ended poll, bad option,
another poll active, question/options changed after votes); 4004 for a vote already counted
(the voter may not vote again); 4002 when the session has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from broker import keys
from broker.bus import Bus, OutgoingEvent, RawHash
from broker.models import (
    ErrorCode,
    MessageType,
    Poll,
    PollCreate,
    PollEnd,
    PollResults,
    PollStatus,
    PollTally,
    PollUpdate,
    PollVote,
    ProtocolError,
    Role,
    Session,
    SessionStatus,
    now_ms,
)
from broker.scripts import Script
from config import ServerSettings
from server.interactions.ballots import Answer, BallotBox, receipt
from server.interactions.loops import pause, stop_loop
from server.interactions.registry import SEES_GATED, STAFF, Action, Actor, Reply
from server.interactions.services import Services

__all__ = [
    "DEADLINES",
    "PollBook",
    "PollRuntime",
    "pause",
    "poll_from_hash",
    "poll_key",
    "stop_loop",
]

log = logging.getLogger("vstudio.server.interactions.polls")

DEADLINES = keys.POLL_DEADLINES

ENDED_IN_STATE = 50
"""Ended polls listed in ``session.state`` (newest); ``GET .../polls`` lists every one."""

AUTO_END_TICK = 0.1
"""Seconds between looks at the deadlines; a poll ends at most this late."""

SLOT_WAIT_MAX_MS = 1000
"""Longest an end waits for a results broadcast claimed before it (see :meth:`PollBook.end`)."""

NOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

CREATE_SCRIPT = (
    NOW_LUA
    + """
-- KEYS[1] session hash, KEYS[2] active poll id, KEYS[3] poll hash, KEYS[4] session's poll list
-- ARGV[1] poll id, ARGV[2] duration seconds or '', ARGV[3..] field, value pairs
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == '"ended"' then return {'session_ended'} end
local active = redis.call('GET', KEYS[2])
if active then return {'busy', active} end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'createdAt', string.format('%d', now), 'votes', 0, 'published', 0,
  unpack(ARGV, 3))
local ends = ''
if ARGV[2] ~= '' then
  ends = now + tonumber(ARGV[2]) * 1000
  redis.call('HSET', KEYS[3], 'endsAt', string.format('%d', ends))
end
redis.call('RPUSH', KEYS[4], ARGV[1])
return {'ok', string.format('%d', now), ends == '' and '' or string.format('%d', ends)}
"""
)

UPDATE_SCRIPT = """
-- KEYS[1] poll hash; ARGV[1] question or '', ARGV[2] options JSON or '', ARGV[3] option count,
-- ARGV[4] duration seconds or ''
local poll = redis.call('HMGET', KEYS[1], 'status', 'votes', 'createdAt')
if not poll[1] then return {'missing'} end
if poll[1] ~= 'active' then return {'ended'} end
if (ARGV[1] ~= '' or ARGV[2] ~= '') and tonumber(poll[2]) > 0 then return {'voted', poll[2]} end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'question', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'options', ARGV[2], 'optionCount', ARGV[3]) end
local ends = ''
if ARGV[4] ~= '' then
  ends = tonumber(poll[3]) + tonumber(ARGV[4]) * 1000
  redis.call('HSET', KEYS[1], 'duration', ARGV[4], 'endsAt', string.format('%d', ends))
end
return {'ok', ends == '' and '' or string.format('%d', ends)}
"""

COUNTS_LUA = """
local function counts(key)
  local n = tonumber(redis.call('HGET', key, 'optionCount'))
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = tonumber(redis.call('HGET', key, 'c' .. i) or '0') end
  return out
end
"""

END_SCRIPT = (
    NOW_LUA
    + """
-- KEYS[1] poll hash, KEYS[2] active poll id, KEYS[3] broadcast slot
-- ARGV[1] poll id, ARGV[2] 'manual' | 'expired'; returns 'ok' and the slot's remaining ms
local poll = redis.call('HMGET', KEYS[1], 'status', 'endsAt', 'votes')
if not poll[1] then return {'missing'} end
if poll[1] ~= 'active' then return {'ended'} end
local ended = now
if ARGV[2] == 'expired' then
  if not poll[2] or tonumber(poll[2]) > now then return {'not_due'} end
  ended = tonumber(poll[2])
end
redis.call('HSET', KEYS[1], 'status', 'ended', 'endedAt', string.format('%d', ended),
  'published', poll[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return {'ok', redis.call('PTTL', KEYS[3])}
"""
)

CLAIM_SCRIPT = (
    NOW_LUA
    + COUNTS_LUA
    + """
-- KEYS[1] poll hash, KEYS[2] broadcast slot; ARGV[1] slot length in ms, ARGV[2] busy ms,
-- ARGV[3] quiet ms
-- 'clean': every accepted vote was broadcast (or the poll ended and the end broadcast it);
-- 'wait', ms: votes still coming and none waiting ARGV[2] yet, or another broadcast is too
-- recent; 'go', votes, counts: broadcast these now.
local poll = redis.call('HMGET', KEYS[1], 'status', 'votes', 'published', 'dirtyAt', 'lastVoteAt')
if poll[1] ~= 'active' or poll[2] == poll[3] then return {'clean'} end
local busy = tonumber(poll[4] or '0') + tonumber(ARGV[2]) - now
local quiet = tonumber(poll[5] or '0') + tonumber(ARGV[3]) - now
if busy > 0 and quiet > 0 then return {'wait', math.min(busy, quiet)} end
-- a tally forced by a storm (busy, when that is rarer than the slot allows) holds the slot
-- only as long as a pause must last: the storm's last votes then show 'quiet' after them, not
-- up to a whole slot later; the next busy tally is 'busy' away still
local slot = tonumber(ARGV[1])
if quiet > 0 and tonumber(ARGV[2]) >= slot then
  slot = math.max(1, math.min(slot, tonumber(ARGV[3])))
end
if not redis.call('SET', KEYS[2], '1', 'PX', slot, 'NX') then
  return {'wait', redis.call('PTTL', KEYS[2])}
end
redis.call('HSET', KEYS[1], 'published', poll[2])
return {'go', tonumber(poll[2]), counts(KEYS[1])}
"""
)


POLL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a poll id may look like; anything else could name another key (``<id>:voters``)."""


def poll_key(session_id: str, poll_id: str) -> str:
    """The poll's hash; 4006 for an id that is not a poll id."""
    if not POLL_ID.fullmatch(poll_id):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"poll {poll_id!r} does not exist in this session"
        )
    return keys.poll(session_id, poll_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _outcome(reply: list[Any]) -> list[str]:
    """A script's reply as text, first element the outcome."""
    return [_text(item) if isinstance(item, bytes | str) else item for item in reply]


def poll_from_hash(raw: dict[bytes, bytes]) -> Poll:
    """The poll as clients see it, from its Redis hash (counts aligned with the options)."""
    fields = {_text(name): _text(value) for name, value in raw.items()}
    options: list[str] = orjson.loads(fields["options"])
    ends = fields.get("endsAt")
    ended = fields.get("endedAt")
    return Poll(
        id=fields["id"],
        session_id=fields["sessionId"],
        question=fields["question"],
        options=options,
        allow_multiple=fields.get("allowMultiple") == "1",
        duration=int(fields["duration"]) if fields.get("duration") else None,
        status=PollStatus(fields["status"]),
        created_at=int(fields["createdAt"]),
        ends_at=int(ends) if ends else None,
        ended_at=int(ended) if ended else None,
        results=[int(fields.get(f"c{index}", 0)) for index in range(len(options))],
        gated=True if fields.get("gated") == "1" else None,
    )


def new_poll_id() -> str:
    """Short and free of the characters keys and REST paths forbid."""
    return secrets.token_hex(6)


class PollBook:
    """The polls of every session, in Redis: the scripts and the reads around them."""

    def __init__(self, bus: Bus, settings: ServerSettings) -> None:
        redis = bus.redis
        self.bus = bus
        self.settings = settings
        self.redis = redis
        self._create = Script(redis, CREATE_SCRIPT)
        self._update = Script(redis, UPDATE_SCRIPT)
        self.ballots = BallotBox(redis)
        self._end = Script(redis, END_SCRIPT)
        self._claim = Script(redis, CLAIM_SCRIPT)
        self._gated: dict[tuple[str, str], bool] = {}
        """Whether a poll is gated, by (session, poll): fixed at creation, so kept forever."""
        self._lookups: dict[tuple[str, str], asyncio.Future[Any]] = {}

    async def is_gated(self, session_id: str, poll_id: str) -> bool:
        """Whether the poll is only for token holders and staff (one read per poll here).

        The votes of a storm all ask at once: they share the one read in flight."""
        key = (session_id, poll_id)
        known = self._gated.get(key)
        if known is not None:
            return known
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(
                self.redis.hget(poll_key(session_id, poll_id), "gated")
            )
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        flag = await asyncio.shield(lookup)
        known = self._gated[key] = flag in (b"1", "1")
        return known

    async def get(self, session_id: str, poll_id: str) -> Poll | None:
        raw = cast(RawHash, await self.redis.hgetall(poll_key(session_id, poll_id)))
        return self._known(poll_from_hash(raw)) if raw else None

    def _known(self, poll: Poll) -> Poll:
        """Note whether ``poll`` is gated, read anyway: a storm's first votes then start at
        once instead of each waiting in a task for the flag (issue 17)."""
        self._gated[(poll.session_id, poll.id)] = bool(poll.gated)
        return poll

    async def require(self, session_id: str, poll_id: str) -> Poll:
        poll = await self.get(session_id, poll_id)
        if poll is None:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"poll {poll_id} does not exist in this session"
            )
        return poll

    async def active(self, session_id: str) -> Poll | None:
        poll_id = await self.redis.get(keys.active_poll(session_id))
        return await self.get(session_id, _text(poll_id)) if poll_id else None

    async def settle(self, session: Session) -> None:
        """End the active poll of a session that has ended: a poll does not outlive it."""
        if session.status != SessionStatus.ENDED:
            return
        poll_id = await self.redis.get(keys.active_poll(session.id))
        if poll_id:
            with contextlib.suppress(ProtocolError):  # ended meanwhile by another reader
                await self.end(session.id, _text(poll_id))

    async def all(self, session_id: str) -> list[Poll]:
        """Every poll of the session, oldest first, with its present counts."""
        ids = await self.redis.lrange(keys.polls(session_id), 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for poll_id in ids:
                pipe.hgetall(poll_key(session_id, _text(poll_id)))
            hashes = await pipe.execute()
        return [self._known(poll_from_hash(raw)) for raw in hashes if raw]

    async def create(self, session_id: str, spec: PollCreate) -> Poll:
        poll_id = new_poll_id()
        fields: dict[str, str | int | bytes] = {
            "id": poll_id,
            "sessionId": session_id,
            "question": spec.question,
            "options": orjson.dumps(spec.options),
            "optionCount": len(spec.options),
            "allowMultiple": "1" if spec.allow_multiple else "0",
            "status": PollStatus.ACTIVE.value,
        }
        if spec.duration is not None:
            fields["duration"] = spec.duration
        if spec.gated:
            fields["gated"] = "1"
        flat = [item for pair in fields.items() for item in pair]
        reply = _outcome(
            await self._create(
                keys=[
                    keys.session(session_id),
                    keys.active_poll(session_id),
                    poll_key(session_id, poll_id),
                    keys.polls(session_id),
                ],
                args=[poll_id, "" if spec.duration is None else spec.duration, *flat],
            )
        )
        if reply[0] == "busy":
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"poll {reply[1]} is still active in this session; end it before creating another",
            )
        _refuse_session(session_id, reply[0])
        if reply[2]:
            await self.redis.zadd(DEADLINES, {f"{session_id}/{poll_id}": int(reply[2])})
        return await self.require(session_id, poll_id)

    async def update(self, session_id: str, change: PollUpdate) -> Poll:
        if change.options and len({o.strip().casefold() for o in change.options}) != len(
            change.options
        ):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "poll.update: options must be distinct")
        reply = _outcome(
            await self._update(
                keys=[poll_key(session_id, change.poll_id)],
                args=[
                    change.question or "",
                    orjson.dumps(change.options) if change.options else "",
                    len(change.options) if change.options else 0,
                    "" if change.duration is None else change.duration,
                ],
            )
        )
        self._refuse_poll(change.poll_id, reply[0])
        if reply[0] == "voted":
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"poll {change.poll_id} has {reply[1]} votes already: its question and options "
                "can only change before the first vote (its duration can change any time)",
            )
        if reply[1]:
            await self.redis.zadd(DEADLINES, {f"{session_id}/{change.poll_id}": int(reply[1])})
        return await self.require(session_id, change.poll_id)

    def vote(self, session_id: str, user_id: str, vote: PollVote) -> asyncio.Future[int]:
        """Count the vote once, in a batch (:mod:`.ballots`): await the poll's votes after that.

        A plain function returning the future, not a coroutine: a storm resumes thousands of
        voters at once, and each level of coroutine is one more step for every one of them."""
        if not POLL_ID.fullmatch(vote.poll_id):
            poll_key(session_id, vote.poll_id)  # raises 4006: an id that is not a poll id
        return self.ballots.cast(session_id, vote.poll_id, user_id, vote.option_index)

    def vote_then(self, session_id: str, user_id: str, vote: PollVote, then: Answer) -> None:
        """:meth:`vote` without a future: ``then`` gets the poll's votes after the batch, or
        the error, once (the WebSocket answers a storm's votes straight from the batch)."""
        if not POLL_ID.fullmatch(vote.poll_id):
            poll_key(session_id, vote.poll_id)  # raises 4006: an id that is not a poll id
        self.ballots.cast_then(session_id, vote.poll_id, user_id, vote.option_index, then)

    def gated_now(self, session_id: str, poll_id: str) -> bool | None:
        """Whether the poll is gated, if this process knows already (no Redis read, no await)."""
        return self._gated.get((session_id, poll_id))

    async def end(self, session_id: str, poll_id: str, *, expired: bool = False) -> Poll | None:
        """End the poll; the ended poll if this call ended it, ``None`` if it was not (yet) due.

        Raises 4006 when a manual end finds the poll missing or ended already.
        """
        reply = _outcome(
            await self._end(
                keys=[
                    poll_key(session_id, poll_id),
                    keys.active_poll(session_id),
                    keys.poll_broadcast(session_id, poll_id),
                ],
                args=[poll_id, "expired" if expired else "manual"],
            )
        )
        if reply[0] != "ok":
            if expired:
                return None
            self._refuse_poll(poll_id, reply[0])
        if int(reply[1]) > 0:
            # a process may hold the broadcast slot with counts it has not published yet;
            # no new slot is granted once the poll has ended, so after this one expires the
            # final results cannot be followed by older ones
            await asyncio.sleep(min(int(reply[1]), SLOT_WAIT_MAX_MS) / 1000)
        await self.redis.zrem(DEADLINES, f"{session_id}/{poll_id}")
        poll = await self.require(session_id, poll_id)
        results = PollResults(
            poll_id=poll.id,
            results=poll.results,
            total_votes=sum(poll.results),
            final=True,
            gated=poll.gated,
        )
        await self.bus.publish_many(
            session_id,
            "polls",
            [
                _event(MessageType.POLL_END, poll.wire()),
                _event(MessageType.POLL_RESULTS, results.wire()),
            ],
        )
        return poll

    async def claim_broadcast(self, session_id: str, poll_id: str) -> list[Any]:
        """Ask for the shared broadcast slot (see :data:`CLAIM_SCRIPT`)."""
        settings = self.settings
        interval_ms = max(1, int(1000 / settings.poll_results_per_second))
        return _outcome(
            await self._claim(
                keys=[poll_key(session_id, poll_id), keys.poll_broadcast(session_id, poll_id)],
                args=[interval_ms, settings.poll_results_busy_ms, settings.poll_results_quiet_ms],
            )
        )

    @staticmethod
    def _refuse_poll(poll_id: str, outcome: str) -> None:
        if outcome in ("missing", "no_poll"):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"poll {poll_id} does not exist in this session"
            )
        if outcome == "ended":
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"poll {poll_id} has ended")


def _refuse_session(session_id: str, outcome: str) -> None:
    if outcome == "missing":
        raise ProtocolError(ErrorCode.SESSION_NOT_FOUND, f"session {session_id} not found")
    if outcome == "session_ended":
        raise ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")


def _event(type_: MessageType, payload: dict[str, Any]) -> OutgoingEvent:
    return OutgoingEvent(type_.value, payload)


@dataclass
class PollRuntime:
    """One process's background work: trailing result flushes and the auto-end loop."""

    book: PollBook
    dirty: dict[tuple[str, str], bool] = field(default_factory=dict)
    flushes: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    ticker: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.book.ballots.on_counted = self.voted

    def voted(self, session_id: str, poll_id: str) -> None:
        """A vote was accepted here: make sure a broadcast will cover it."""
        key = (session_id, poll_id)
        self.dirty[key] = True
        if key not in self.flushes:
            self.flushes[key] = asyncio.create_task(self._flush(key))

    async def _flush(self, key: tuple[str, str]) -> None:
        session_id, poll_id = key
        try:
            while True:
                self.dirty[key] = False
                reply = await self.book.claim_broadcast(session_id, poll_id)
                if reply[0] == "go":
                    gated = await self.book.is_gated(session_id, poll_id)
                    tally = PollTally(
                        poll_id=poll_id,
                        results=list(reply[2]),
                        total_votes=int(reply[1]),
                        gated=True if gated else None,
                    )
                    await self.book.bus.publish(
                        session_id, "polls", MessageType.POLL_UPDATE, tally.wire()
                    )
                elif reply[0] == "wait":
                    await asyncio.sleep(max(int(reply[1]), 1) / 1000)
                elif not self.dirty[key]:
                    return
        except Exception:
            log.exception("poll results flush failed for %s/%s", session_id, poll_id)
        finally:
            self.flushes.pop(key, None)
            self.dirty.pop(key, None)

    def start(self) -> None:
        self.stopping.clear()
        self.ticker = asyncio.create_task(self._auto_end())

    async def stop(self) -> None:
        self.stopping.set()
        if self.ticker is not None:
            await stop_loop(self.ticker)
        pending = list(self.flushes.values())
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        for task in pending:
            task.cancel()

    async def _auto_end(self) -> None:
        """Every process looks at the deadlines; the end script lets exactly one end a poll."""
        redis = self.book.redis
        while not self.stopping.is_set():
            try:
                due = cast(
                    list[bytes],
                    await redis.zrangebyscore(DEADLINES, "-inf", now_ms(), start=0, num=100),
                )
                for member in due:
                    session_id, _, poll_id = _text(member).partition("/")
                    ended = await self.book.end(session_id, poll_id, expired=True)
                    if ended is None:
                        await self._forget_if_over(session_id, poll_id, member)
            except Exception:
                log.exception("poll auto-end pass failed")
            await pause(self.stopping, AUTO_END_TICK)

    async def _forget_if_over(self, session_id: str, poll_id: str, member: bytes) -> None:
        """Drop a deadline whose poll is gone or ended by someone else."""
        poll = await self.book.get(session_id, poll_id)
        if poll is None or poll.status == PollStatus.ENDED:
            await self.book.redis.zrem(DEADLINES, member)


async def create_poll(services: Services, actor: Actor, spec: PollCreate) -> dict[str, Any]:
    book = services.polls.book
    poll = await book.create(actor.session_id, spec)
    await services.bus.publish(actor.session_id, "polls", MessageType.POLL_CREATE, poll.wire())
    return poll.wire()


async def update_poll(services: Services, actor: Actor, change: PollUpdate) -> dict[str, Any]:
    book = services.polls.book
    poll = await book.update(actor.session_id, change)
    await services.bus.publish(actor.session_id, "polls", MessageType.POLL_UPDATE, poll.wire())
    return poll.wire()


async def end_poll(services: Services, actor: Actor, request: PollEnd) -> dict[str, Any]:
    poll = await services.polls.book.end(actor.session_id, request.poll_id)
    assert poll is not None  # a manual end either ends the poll or raises
    return poll.wire()


async def vote(services: Services, actor: Actor, ballot: PollVote) -> dict[str, Any]:
    """Count one vote: the votes of one loop turn go to Redis together (:mod:`.ballots`)."""
    book = services.polls.book
    session_id, poll_id = actor.session_id, ballot.poll_id
    if actor.role not in SEES_GATED:
        gated = book.gated_now(session_id, poll_id)
        if gated is None:
            gated = await book.is_gated(session_id, poll_id)
        if gated:
            raise _only_for_holders(poll_id)
    await book.vote(session_id, actor.user_id, ballot)
    return receipt(poll_id, ballot.option_index)


def start_vote(services: Services, actor: Actor, ballot: PollVote, reply: Reply) -> bool:
    """:func:`vote` without a coroutine: ``reply`` gets the receipt or the error, once.

    ``False`` (nothing done) when this process does not know yet whether the poll is gated:
    :func:`vote` reads that first."""
    book = services.polls.book
    session_id, poll_id = actor.session_id, ballot.poll_id
    if actor.role not in SEES_GATED:
        gated = book.gated_now(session_id, poll_id)
        if gated is None:
            return False
        if gated:
            raise _only_for_holders(poll_id)
    counted = receipt(poll_id, ballot.option_index)

    def then(outcome: int | BaseException) -> None:
        reply(outcome if isinstance(outcome, BaseException) else counted)

    book.vote_then(session_id, actor.user_id, ballot, then)
    return True


def _only_for_holders(poll_id: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOKEN_GATE_FAILED,
        f"poll {poll_id} is for token holders only: connect as token_holder "
        "with a wallet that holds this session's required tokens",
    )


async def polls_state(services: Services, session_id: str) -> dict[str, Any]:
    """``activePoll`` (or null) and ``polls``: the session's latest polls with their counts.

    Gated polls are included: the fan-out takes them out for clients who may not see them
    (:func:`server.fanout.audience.for_audience`)."""
    polls = await services.polls.book.all(session_id)
    active = next((poll for poll in polls if poll.status == PollStatus.ACTIVE), None)
    return {
        "activePoll": active.wire() if active else None,
        "polls": [poll.wire() for poll in polls[-ENDED_IN_STATE:]],
    }


ACTIONS = (
    Action(MessageType.POLL_CREATE, create_poll, STAFF),
    Action(MessageType.POLL_UPDATE, update_poll, STAFF),
    Action(MessageType.POLL_END, end_poll, STAFF),
    Action(MessageType.POLL_VOTE, vote, frozenset(Role), start=start_vote),
)
"""The client messages this module performs."""
