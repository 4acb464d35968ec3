"""``vstudio session apply FILE``: a TOML file that describes a session, and the plan to reach it.

Reading the file and working out what to change are pure functions, tested without a server;
the command only carries the plan out, so ``--dry-run`` and the real apply print the same steps.
Applying the same file twice changes nothing the second time: the session is found again by its
title among the artist's sessions that have not ended, and polls already opened (by question)
are not opened again. Polls open only on a live session: with ``live = false`` they wait (a
timed poll on a session nobody can see would run out unseen) and the next apply after the
session went live opens them. ``live = true`` while another of the artist's sessions is live is
refused before anything changes (one live session per artist).

The ``[[ingest]]`` tables are the session's chat sources, read by the worker fleet (issue 15):
apply declares each one (``POST .../sources``, which also replaces other ``credentials`` or
``redundancy``) and withdraws the session's sources that the file no longer lists, so the file
is the whole list; the plan names each of these steps. A ``simulate`` table is made-up demo
chat at ``rate`` messages per second (the source ``simulate:RATE``), read by the fleet too.

```toml
[session]
title = "Friday night live"
streamUrl = "https://www.twitch.tv/yourchannel"
streamPlatform = "twitch"
chatEnabled = true
reactionsEnabled = true
allowGuests = true
producerIds = ["sam"]
live = true                      # start it (scheduled -> live)

[[ingest]]                       # a chat source the worker fleet reads
platform = "twitch"              # twitch, youtube, tiktok, discord (or simulate + rate)
target = "yourchannel"           # or channel / video / user / channelId, as vstudio ingest
credentials = "default"          # a credentials set in the workers' settings
redundancy = 2                   # workers reading it at once (default: the fleet's)

[[polls]]                        # opened in order, one at a time
question = "Which song next?"
options = ["Intro", "Outro"]
duration = 120
```
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from broker.models import PollCreate, RequiredTokens
from broker.sources import SourceKind, SourceSpec

__all__ = ["Plan", "SessionFile", "SessionFileError", "plan_changes", "read_session_file"]

TOGGLES = ("title", "streamUrl", "chatEnabled", "reactionsEnabled", "allowGuests")
"""Fields a PATCH may change after creation."""
FIXED = ("streamPlatform", "producerIds", "requiredTokens", "scheduledStart")
"""Fields fixed at creation; a difference is reported, not applied."""


class SessionFileError(ValueError):
    """The file cannot be applied; the message names the file and the problem."""


class SessionSpec(BaseModel):
    """The ``[session]`` table, in the wire's camelCase names."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    title: str = Field(min_length=1, max_length=200)
    stream_url: str | None = None
    stream_platform: Literal["twitch", "youtube", "tiktok", "other"] | None = None
    scheduled_start: int | None = None
    chat_enabled: bool = True
    reactions_enabled: bool = True
    allow_guests: bool = False
    producer_ids: list[str] = Field(default_factory=list)
    required_tokens: RequiredTokens | None = None
    live: bool = False


TARGET_KEYS = ("target", "channel", "video", "user", "channelId", "channel_id", "rate")
"""Where an ``[[ingest]]`` table may name its target: ``target``, or the flag ``vstudio ingest``
takes for that platform (``channel``, ``video``, ``user``, ``channelId``, simulate's ``rate``)."""


class IngestSpec(BaseModel):
    """One ``[[ingest]]`` table: a source for the fleet."""

    model_config = ConfigDict(extra="allow")

    platform: Literal["twitch", "youtube", "tiktok", "discord", "simulate"]

    @model_validator(mode="after")
    def _a_source(self) -> IngestSpec:
        self.source()  # a bad target or an unknown key is reported when the file is read
        return self

    def source(self) -> SourceSpec:
        """The source this table declares; ``ValueError`` naming the problem."""
        extra = dict(self.model_extra or {})
        named = [key for key in TARGET_KEYS if key in extra]
        if len(named) != 1:
            raise ValueError(
                f'give the {self.platform} source\'s target once, as target = "..."'
                + (f" (found {', '.join(named)})" if named else "")
            )
        fields: dict[str, Any] = {"target": str(extra.pop(named[0]))}
        for key in ("credentials", "redundancy"):
            if key in extra:
                fields[key] = extra.pop(key)
        if extra:
            raise ValueError(f"unknown key(s) {', '.join(sorted(extra))} for a chat source")
        try:
            return SourceSpec(platform=SourceKind(self.platform), **fields)
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


class SessionFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session: SessionSpec
    ingest: list[IngestSpec] = Field(default_factory=list)
    polls: list[PollCreate] = Field(default_factory=list)


def read_session_file(path: Path) -> SessionFile:
    """Parse and validate the file, or :class:`SessionFileError` naming what is wrong."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SessionFileError(f"{path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SessionFileError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return SessionFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: "
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        raise SessionFileError(f"{path}: {problems}") from exc


class Plan(BaseModel):
    """What apply will do, in order, and what it will only report.

    ``blocked`` is why the whole apply is refused before any change (the command exits 5).
    """

    create: dict[str, Any] | None = None
    update: dict[str, Any] = Field(default_factory=dict)
    add_sources: list[dict[str, Any]] = Field(default_factory=list)
    """Sources to declare (new, or another ``credentials``/``redundancy``), as POST bodies."""
    remove_sources: list[str] = Field(default_factory=list)
    """Source ids the session has and the file does not list."""
    start: bool = False
    open_poll: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    blocked: str | None = None

    @property
    def changes_nothing(self) -> bool:
        return not (
            self.create
            or self.update
            or self.add_sources
            or self.remove_sources
            or self.start
            or self.open_poll
        )

    def steps(self) -> list[str]:
        """The changes in the order apply makes them, worded the same for a dry run."""
        steps: list[str] = []
        if self.create is not None:
            steps.append(f"create session {self.create['title']!r}")
        if self.update:
            steps.append(f"update {', '.join(sorted(self.update))}")
        for body in self.add_sources:
            steps.append(f"declare source {body['platform']}:{body['target']}")
        for source_id in self.remove_sources:
            steps.append(f"withdraw source {source_id}")
        if self.start:
            steps.append("start it (scheduled -> live)")
        if self.open_poll is not None:
            steps.append(f"open poll {self.open_poll['question']!r}")
        return steps


def plan_changes(
    spec: SessionFile,
    existing: dict[str, Any] | None,
    polls: list[dict[str, Any]],
    live_elsewhere: dict[str, Any] | None = None,
    sources: list[dict[str, Any]] | None = None,
) -> Plan:
    """The changes that bring the server's session (``existing``, or none) to ``spec``.

    ``live_elsewhere`` is another of the artist's sessions that is live now, if any;
    ``sources`` the session's declared sources (``GET .../sources``: ``id``, ``credentials``,
    ``redundancy``).
    """
    wanted = spec.session.model_dump(by_alias=True, exclude={"live"}, exclude_none=True)
    plan = Plan()
    status = existing.get("status") if existing else None
    if existing is None:
        plan.create = wanted
        plan.start = spec.session.live
    else:
        plan.update = {
            name: wanted[name]
            for name in TOGGLES
            if name in wanted and existing.get(name) != wanted[name]
        }
        for name in FIXED:
            if name in wanted and wanted[name] not in (existing.get(name), [], None):
                plan.notes.append(
                    f"{name} is fixed once a session exists (it is {existing.get(name)!r}); "
                    "create a new session to change it"
                )
        plan.start = spec.session.live and status == "scheduled"
        if spec.session.live and status == "ended":
            plan.notes.append("the session has ended; it cannot go live again")
    if plan.start and live_elsewhere is not None:
        other = live_elsewhere
        plan.blocked = (
            f"session {other['id']} ({other.get('title', '')!r}) is live, and an artist has one "
            f"live session at a time: end it first (vstudio session end {other['id']}), "
            "or set live = false to create this one as scheduled"
        )
    plan.add_sources, plan.remove_sources = _source_changes(spec, sources or [])
    will_be_live = status == "live" or plan.start
    if not will_be_live and status != "ended":
        plan.notes.append("the session is left scheduled: fans see it once it is started")
    asked = {poll.get("question") for poll in polls}
    active = any(poll.get("status") == "active" for poll in polls)
    next_poll = next((poll for poll in spec.polls if poll.question not in asked), None)
    if next_poll is None:
        return plan
    if not will_be_live:
        if status != "ended":
            plan.notes.append(
                f"poll {next_poll.question!r} waits until the session is live "
                "(start it, then apply again)"
            )
    elif active:
        plan.notes.append(f"poll {next_poll.question!r} waits until the active poll ends")
    else:
        plan.open_poll = next_poll.wire()
    return plan


def _source_changes(
    spec: SessionFile, declared: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """What to declare and withdraw so the session's sources are the file's ``[[ingest]]``."""
    have = {row["id"]: (row.get("credentials"), row.get("redundancy")) for row in declared}
    wanted = {}
    for table in spec.ingest:
        source = table.source()
        wanted[source.id] = source
    add = [
        source.model_dump(mode="json", exclude_none=True)
        for source_id, source in wanted.items()
        if have.get(source_id) != (source.credentials, source.redundancy)
    ]
    return add, sorted(set(have) - set(wanted))
