"""What chat each session wants read: the fleet's desired state (issue 15).

A session declares *sources* (a platform and what to read there: a Twitch channel, a YouTube
video or channel, a TikTok user, a Discord channel) and names the credentials to read them with;
the credentials themselves stay in the workers' settings, never in Redis. One source that feeds
several sessions is one entry with several sessions, so the fleet reads it once.

A source is *wanted* while one of its sessions is live, or scheduled to start within the lead
time; workers claim wanted sources by lease (``ingest/fleet``) and publish what they read to
every session that wants it.

Every key of a fleet shares its ``{fleet:NAME}`` hash tag (one Redis Cluster slot): the
declarations are a single hash so that a worker reads the whole desired state with one command.
The fleet's name (a setting, ``default``) lets several fleets share one Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker import keys
from broker.models import Platform, SessionStatus

__all__ = [
    "SOURCE_PLATFORMS",
    "SourceHealth",
    "SourceKind",
    "SourceSpec",
    "SourceStore",
    "Wanted",
    "WorkerRecord",
    "is_wanted",
]

SOURCE_PLATFORMS = (Platform.TWITCH, Platform.YOUTUBE, Platform.TIKTOK, Platform.DISCORD)
"""Platforms a session can declare a source on (``audifi`` is the fans' own chat)."""


class SourceKind(StrEnum):
    """What a source reads: one of :data:`SOURCE_PLATFORMS`, or ``simulate``.

    ``simulate`` is made-up demo chat (``vstudio up`` declares one): its target is the rate in
    messages per second. It is a kind of *source*, never a :class:`~broker.models.Platform`, so
    no message on the wire can claim it: what it emits looks like the four platforms' chat, as
    ``vstudio ingest simulate``'s does.
    """

    TWITCH = "twitch"
    YOUTUBE = "youtube"
    TIKTOK = "tiktok"
    DISCORD = "discord"
    SIMULATE = "simulate"


SIMULATE_MAX_RATE = 10_000.0
"""Most messages per second a ``simulate`` source may ask for."""

_TARGET_RULES: dict[SourceKind, tuple[re.Pattern[str], str]] = {
    SourceKind.TWITCH: (re.compile(r"^[a-z0-9_]{1,25}$"), "a Twitch channel name"),
    SourceKind.YOUTUBE: (
        re.compile(r"^(?:[A-Za-z0-9_-]{11}|UC[A-Za-z0-9_-]{22}|@[A-Za-z0-9._-]{3,30})$"),
        "a YouTube video id (11 characters), a channel id (UC...) or a handle (@name)",
    ),
    SourceKind.TIKTOK: (re.compile(r"^[a-z0-9_.]{2,24}$"), "a TikTok username"),
    SourceKind.DISCORD: (re.compile(r"^[0-9]{15,21}$"), "a Discord channel id (a snowflake)"),
    SourceKind.SIMULATE: (
        re.compile(r"^[0-9]{1,5}(?:\.[0-9]{1,3})?$"),
        f"a rate in messages per second, above 0 and at most {SIMULATE_MAX_RATE:g}",
    ),
}


def _canonical_target(kind: SourceKind, target: str) -> str:
    """The one spelling of a target, so ``#Shroud`` and ``shroud`` (or ``3.0`` and ``3``) are
    the same source."""
    text = target.strip()
    if kind is SourceKind.TWITCH:
        text = text.lstrip("#").lower()
    elif kind is SourceKind.TIKTOK:
        text = text.lstrip("@").lower()
    elif kind is SourceKind.SIMULATE and _TARGET_RULES[kind][0].match(text):
        text = f"{float(text):g}"
    return text


def _breaks_rule(kind: SourceKind, canonical: str) -> bool:
    if not _TARGET_RULES[kind][0].match(canonical):
        return True
    return kind is SourceKind.SIMULATE and not 0 < float(canonical) <= SIMULATE_MAX_RATE


class SourceSpec(BaseModel):
    """One thing to read: ``{platform, target, credentials, redundancy}``.

    ``credentials`` names a set of credentials in the workers' settings (``default`` is the
    ``[ingest]`` table's own); ``redundancy`` (1-3) overrides the fleet's setting for this
    source: that many workers read it at once, and the dedupe makes delivery exactly once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    platform: SourceKind
    target: str = Field(min_length=1, max_length=100)
    credentials: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    redundancy: int | None = Field(default=None, ge=1, le=3)

    @model_validator(mode="after")
    def _check_target(self) -> Self:
        canonical = _canonical_target(self.platform, self.target)
        if _breaks_rule(self.platform, canonical):
            raise ValueError(f"{self.target!r} is not {_TARGET_RULES[self.platform][1]}")
        object.__setattr__(self, "target", canonical)
        return self

    @property
    def id(self) -> str:
        """``twitch:shroud``: the source's identity across sessions and workers."""
        return f"{self.platform}:{self.target}"


@dataclass(frozen=True)
class Wanted:
    """A source to read now, and every session it feeds (sorted, for stable output)."""

    spec: SourceSpec
    sessions: tuple[str, ...]


def is_wanted(session: dict[str, Any] | None, now_ms: int, lead_ms: int) -> bool:
    """Whether a session's record (wire fields) wants its sources read at ``now_ms``.

    Live sessions do; scheduled ones from ``scheduledStart - lead`` on (a lead of 0 waits for
    live); ended or missing ones never.
    """
    if session is None:
        return False
    status = session.get("status")
    if status == SessionStatus.LIVE:
        return True
    if status == SessionStatus.SCHEDULED and lead_ms > 0:
        start = session.get("scheduledStart")
        return isinstance(start, int) and now_ms >= start - lead_ms
    return False


def _field(session_id: str, source_id: str) -> str:
    return f"{session_id}|{source_id}"


class SourceStore:
    """The declarations in Redis: one hash, field ``<session>|<source>``, value the spec."""

    def __init__(self, redis: Any, fleet: str = "default") -> None:
        self.redis = redis
        self.fleet = fleet
        self.key = keys.fleet_sources(fleet)

    async def add(self, session_id: str, spec: SourceSpec) -> bool:
        """Declare ``spec`` for the session; ``False`` if it was already declared (the spec
        is replaced, so changing credentials or redundancy is an add)."""
        keys.session_prefix(session_id)  # the same id rules as every session key
        created = await self.redis.hset(
            self.key, _field(session_id, spec.id), spec.model_dump_json()
        )
        return bool(created)

    async def remove(self, session_id: str, source_id: str) -> bool:
        """Withdraw one declaration; ``False`` if the session did not declare it."""
        return bool(await self.redis.hdel(self.key, _field(session_id, source_id)))

    async def remove_session(self, session_id: str) -> int:
        """Withdraw every declaration of a session (it ended or was deleted)."""
        fields = [sid for sid in await self._fields() if sid.startswith(f"{session_id}|")]
        return int(await self.redis.hdel(self.key, *fields)) if fields else 0

    async def of_session(self, session_id: str) -> list[SourceSpec]:
        """The session's sources, by id."""
        declared = await self.declared()
        return sorted(
            (spec for (sid, _), spec in declared.items() if sid == session_id),
            key=lambda spec: spec.id,
        )

    async def declared(self) -> dict[tuple[str, str], SourceSpec]:
        """Every declaration: ``(session, source id) -> spec``."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.key)
        out: dict[tuple[str, str], SourceSpec] = {}
        for field, value in raw.items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            session_id, _, source_id = name.partition("|")
            out[(session_id, source_id)] = SourceSpec.model_validate_json(value)
        return out

    async def wanted(self, now_ms: int, lead_ms: int = 0) -> dict[str, Wanted]:
        """Sources to read now, by id, each with the sessions that want it.

        Reads each declaring session's ``status`` and ``scheduledStart`` (its own slot, so one
        command per session, pipelined where the client allows).
        """
        declared = await self.declared()
        session_ids = sorted({sid for sid, _ in declared})
        records = await self._session_records(session_ids)
        sessions_of: dict[str, list[str]] = {}
        specs: dict[str, SourceSpec] = {}
        for (session_id, source_id), spec in declared.items():
            if is_wanted(records.get(session_id), now_ms, lead_ms):
                sessions_of.setdefault(source_id, []).append(session_id)
                specs.setdefault(source_id, spec)
        return {
            source_id: Wanted(specs[source_id], tuple(sorted(sessions)))
            for source_id, sessions in sorted(sessions_of.items())
        }

    async def _fields(self) -> list[str]:
        raw = await self.redis.hkeys(self.key)
        return [f.decode() if isinstance(f, bytes) else str(f) for f in raw]

    async def _session_records(self, session_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not session_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hmget(keys.session(session_id), "status", "scheduledStart")
        rows = await pipe.execute()
        records: dict[str, dict[str, Any]] = {}
        for session_id, (status, start) in zip(session_ids, rows, strict=True):
            if status is None:
                continue
            records[session_id] = {
                "status": orjson.loads(status),
                "scheduledStart": orjson.loads(start) if start is not None else None,
            }
        return records


class WorkerRecord(BaseModel):
    """A fleet worker as ``vstudio fleet status`` shows it (written by the worker, expiring
    when it stops beating): where it runs, how much it reads and may read."""

    model_config = ConfigDict(extra="forbid")

    id: str
    host: str
    pid: int
    capacity: int
    load: int
    started: int
    seen: int
    sources: list[str] = Field(default_factory=list)


class SourceHealth(BaseModel):
    """How one owner's reading of a source goes, as the worker reporting it sees it."""

    model_config = ConfigDict(extra="forbid")

    source: str
    owner: str
    state: str
    sessions: list[str]
    msg_per_s: float = 0.0
    lag_ms: int | None = None
    last_error: str = ""
    seen: int
