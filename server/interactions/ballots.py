"""Votes in batches: what arrives for one poll in one loop turn is counted by one script call.

A vote storm is thousands of ``poll.vote`` frames within a second. Counted one script call
each, most of a server's CPU went into the Redis client (a pooled connection, the command
packed, the reply parsed) rather than into the vote. :class:`BallotBox` gathers the votes for
one poll that arrive while no call for that poll is in flight (at least one loop turn's worth)
and sends them as ONE ``EVALSHA`` whose arguments are the list of ``(user, option)`` pairs; the
script answers one outcome per vote, in order, so every voter still gets its own precise reply.
Once a batch carried more than one vote (a storm), the poll's next batch waits
:data:`server.turns.LINGER` for more before it goes; a lone vote never waits.

The rules are those of one vote at a time, applied in arrival order inside the script: one vote
per user per poll (per option with ``allowMultiple``) by ``SADD`` on the poll's voters set, so a
user's second vote in the same batch, a revote in a later batch and a retry of the same
``requestId`` are each refused with 4004 and counted nothing; a poll that has ended, expired or
lost its session refuses the whole batch with the error a single vote would get. The script's
keys (poll hash, voters set, session hash) share the session's hash tag, so a batch is one slot
on a Redis Cluster; the call is a plain ``EVALSHA``, never inside a pipeline.

Acknowledgements are built without encoding JSON per vote: :class:`Receipt` holds the reply
bytes up to the timestamp, once per (poll, option), and splices in the timestamp and the
request id (escaped by orjson as a bare string), byte for byte what ``orjson.dumps`` of the
whole envelope gives.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from broker import keys
from broker.models import ErrorCode, MessageType, ProtocolError, now_ms
from broker.scripts import Script
from server.turns import LINGER

__all__ = ["BALLOT_SCRIPT", "BATCH_MAX", "Answer", "BallotBox", "Receipt", "receipt"]

log = logging.getLogger("vstudio.server.interactions.ballots")

BATCH_MAX = 500
"""Votes per script call at most: a burst is cut into calls that keep Redis responsive."""

BALLOT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- KEYS[1] poll hash, KEYS[2] voters set, KEYS[3] session hash
-- ARGV: user id, option index, user id, option index, ... (in arrival order)
-- a refusal of the whole batch: {'no_poll'} | {'session_ended'} | {'ended'}
-- else {'ok', option count, votes after the batch, one code per vote: 1 counted,
-- 0 already counted, 2 no such option}
local poll = redis.call('HMGET', KEYS[1], 'status', 'endsAt', 'optionCount', 'allowMultiple',
  'votes', 'published')
if not poll[1] then return {'no_poll'} end
if redis.call('HGET', KEYS[3], 'status') == '"ended"' then return {'session_ended'} end
if poll[1] ~= 'active' then return {'ended'} end
if poll[2] and tonumber(poll[2]) <= now then return {'ended'} end
local count = tonumber(poll[3])
local multiple = poll[4] == '1'
local out = {'ok', count, 0}
local added = {}
local accepted = 0
for i = 1, #ARGV, 2 do
  local option = tonumber(ARGV[i + 1])
  local code = 2
  if option < count then
    local member = ARGV[i]
    if multiple then member = member .. '#' .. ARGV[i + 1] end
    if redis.call('SADD', KEYS[2], member) == 1 then
      code = 1
      accepted = accepted + 1
      added[option] = (added[option] or 0) + 1
    else
      code = 0
    end
  end
  out[#out + 1] = code
end
for option, n in pairs(added) do
  redis.call('HINCRBY', KEYS[1], 'c' .. string.format('%d', option), n)
end
if accepted > 0 then
  out[3] = redis.call('HINCRBY', KEYS[1], 'votes', accepted)
  -- for the tallies' pacing (polls.CLAIM_SCRIPT): when votes stopped, since when unpublished
  local stamp = string.format('%d', now)
  if poll[5] == poll[6] then redis.call('HSET', KEYS[1], 'dirtyAt', stamp) end
  redis.call('HSET', KEYS[1], 'lastVoteAt', stamp)
else
  out[3] = tonumber(redis.call('HGET', KEYS[1], 'votes') or '0')
end
return out
"""

COUNTED, REPEATED, NO_OPTION = 1, 0, 2
"""The per-vote codes of :data:`BALLOT_SCRIPT`."""

Answer = Callable[[int | BaseException], None]
"""Told a vote's outcome, once: the poll's votes after its batch, or the error (a
:class:`asyncio.CancelledError` when the count was cancelled, at shutdown)."""

Vote = tuple[str, int, Answer]
"""``(user id, option index, whom to answer)``."""


def refusal(session_id: str, poll_id: str, option: int, outcome: Any, option_count: int) -> Any:
    """The :class:`ProtocolError` one vote gets for a script outcome, as a single vote would."""
    if outcome == "no_poll":
        return ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"poll {poll_id} does not exist in this session"
        )
    if outcome == "session_ended":
        return ProtocolError(ErrorCode.SESSION_ENDED, f"session {session_id} has ended")
    if outcome == "ended":
        return ProtocolError(ErrorCode.INVALID_MESSAGE, f"poll {poll_id} has ended")
    if outcome == NO_OPTION:
        return ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"option {option} does not exist in poll {poll_id}: "
            f"it has options 0 to {option_count - 1}",
        )
    if outcome == REPEATED:
        return ProtocolError(
            ErrorCode.FORBIDDEN,
            f"your vote for option {option} in poll {poll_id} was already counted",
        )
    return ProtocolError(ErrorCode.INVALID_MESSAGE, f"vote refused ({outcome})")


class Receipt(dict[str, Any]):
    """The reply payload ``{pollId, optionIndex, counted: true}`` with its frame pre-encoded.

    It is the dict every transport may encode as usual; the WebSocket writes
    :meth:`reply` instead, which only splices the timestamp and request id into fixed bytes.
    """

    __slots__ = ("_head",)

    def __init__(self, poll_id: str, option: int) -> None:
        super().__init__(pollId=poll_id, optionIndex=option, counted=True)
        self._head = (
            b'{"type":"'
            + MessageType.POLL_VOTE.value.encode()
            + b'","payload":'
            + orjson.dumps(dict(self))
            + b',"timestamp":'
        )

    def reply(self, request_id: str, timestamp: int | None = None) -> bytes:
        """``orjson.dumps({type, payload, timestamp, requestId})`` of this reply, spliced."""
        stamp = now_ms() if timestamp is None else timestamp
        return b'%b%d,"requestId":%b}' % (self._head, stamp, orjson.dumps(request_id))


_receipts: dict[tuple[str, int], Receipt] = {}


def receipt(poll_id: str, option: int) -> Receipt:
    """The shared :class:`Receipt` of a counted vote for ``option`` in ``poll_id``."""
    found = _receipts.get((poll_id, option))
    if found is None:
        if len(_receipts) > 10_000:  # polls come and go; the cache stays small
            _receipts.clear()
        found = _receipts[(poll_id, option)] = Receipt(poll_id, option)
    return found


class BallotBox:
    """One process's pending votes, by poll, each batch counted by one script call.

    A poll has at most one call in flight: the votes that arrive meanwhile wait for it and
    go together in the next one, so the batches grow with the load and the round trip.
    """

    def __init__(self, redis: Any) -> None:
        self._script = Script(redis, BALLOT_SCRIPT)
        self.on_counted: Callable[[str, str], None] = lambda session_id, poll_id: None
        """Called once per batch that counted a vote (the poll runtime's results flush)."""
        self._pending: dict[tuple[str, str], list[Vote]] = {}
        self._busy: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._crowded: set[tuple[str, str]] = set()
        """Polls whose last batch carried more than one vote: the next one lingers."""
        self.calls = 0
        """Script calls made (tests and benchmarks read it: votes per call)."""

    def cast(self, session_id: str, poll_id: str, user_id: str, option: int) -> asyncio.Future[int]:
        """Queue one vote; the future is the poll's vote count after its batch, or the error.

        A voter that stops waiting (its connection closed) does not take the vote back: it is
        counted if it was valid, as a single vote sent before the connection closed would be."""
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.cast_then(session_id, poll_id, user_id, option, partial(_settle, answer))
        return answer

    def cast_then(
        self, session_id: str, poll_id: str, user_id: str, option: int, then: Answer
    ) -> None:
        """Queue one vote; ``then`` is called with its outcome, once, from the batch's answer.

        No future and no task step per vote: a storm's WebSocket acks are written straight
        from the batch's answer (:meth:`cast` wraps this for callers that await)."""
        key = (session_id, poll_id)
        queue = self._pending.get(key)
        if queue is None:
            queue = self._pending[key] = []
            if key not in self._busy:
                self._busy.add(key)
                loop = asyncio.get_running_loop()
                if key in self._crowded:  # a storm: let the batch fill (server.turns.LINGER)
                    loop.call_later(LINGER, self._start, key)
                else:
                    loop.call_soon(self._start, key)
        queue.append((user_id, option, then))

    def _start(self, key: tuple[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._drain(key))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: tuple[str, str]) -> None:
        """Send the poll's pending votes, batch after batch, until none is left."""
        try:
            while votes := self._pending.pop(key, None):
                if len(votes) > BATCH_MAX:
                    self._pending[key] = votes[BATCH_MAX:]
                    votes = votes[:BATCH_MAX]
                if len(votes) > 1:
                    if len(self._crowded) > 10_000:  # polls come and go; the set stays small
                        self._crowded.clear()
                    self._crowded.add(key)
                else:
                    self._crowded.discard(key)
                await self._count(key, votes)
        finally:
            self._busy.discard(key)
            if key in self._pending:  # arrived while the last call returned: start again
                self._busy.add(key)
                asyncio.get_running_loop().call_soon(self._start, key)

    async def _count(self, key: tuple[str, str], votes: list[Vote]) -> None:
        """One script call for ``votes``; every voter gets an answer, whatever happens."""
        session_id, poll_id = key
        args: list[str | int] = []
        for user_id, option, _ in votes:
            args += (user_id, option)
        keys_ = [
            keys.poll(session_id, poll_id),
            keys.poll_voters(session_id, poll_id),
            keys.session(session_id),
        ]
        try:
            self.calls += 1
            reply = await self._script(keys=keys_, args=args)
            self._answer(session_id, poll_id, votes, reply)
        except asyncio.CancelledError as exc:
            for _, _, answer in votes:
                _tell(answer, exc)
            raise
        except Exception as exc:  # Redis unreachable, say: each voter gets the error
            for _, _, answer in votes:
                _tell(answer, _copy(exc))  # each its own copy, so tracebacks stay apart

    def _answer(self, session_id: str, poll_id: str, votes: list[Vote], reply: list[Any]) -> None:
        outcome = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if outcome != "ok":
            for _, option, answer in votes:
                _tell(answer, refusal(session_id, poll_id, option, outcome, 0))
            return
        option_count, total = int(reply[1]), int(reply[2])
        for (_, option, answer), code in zip(votes, reply[3:], strict=True):
            if code == COUNTED:
                _tell(answer, total)
            else:
                _tell(answer, refusal(session_id, poll_id, option, code, option_count))
        if COUNTED in reply[3:]:  # after the answers, so the voters hear first
            self.on_counted(session_id, poll_id)


def _tell(answer: Answer, outcome: int | BaseException) -> None:
    """Give one voter its outcome; a failing answer does not keep it from the others."""
    try:
        answer(outcome)
    except Exception:
        log.exception("a vote's answer failed")


def _settle(future: asyncio.Future[int], outcome: int | BaseException) -> None:
    """The outcome into ``future``, unless its voter stopped waiting (the vote counts anyway)."""
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _copy(exc: Exception) -> Exception:
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be copied is shared
        return exc
