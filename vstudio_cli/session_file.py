"""``vstudio session apply FILE``: a TOML file that describes a session, and the plan to reach it.

Reading the file and working out what to change are pure functions, tested without a server;
the command only carries the plan out, so ``--dry-run`` and the real apply print the same steps.
Applying the same file twice changes nothing the second time: the session is found again by its
title among the artist's sessions that have not ended, and polls already opened (by question)
are not opened again. Polls open only on a live session: with ``live = false`` they wait (a
timed poll on a session nobody can see would run out unseen) and the next apply after the
session went live opens them. ``live = true`` while another of the artist's sessions is live is
refused before anything changes (one live session per artist).

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

[[ingest]]
platform = "twitch"
channel = "yourchannel"

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from broker.models import PollCreate, RequiredTokens

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


class IngestSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    platform: Literal["twitch", "youtube", "tiktok", "discord", "simulate"]


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
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise SessionFileError(f"{path}: {problems}") from exc


class Plan(BaseModel):
    """What apply will do, in order, and what it will only report.

    ``blocked`` is why the whole apply is refused before any change (the command exits 5).
    """

    create: dict[str, Any] | None = None
    update: dict[str, Any] = Field(default_factory=dict)
    start: bool = False
    open_poll: dict[str, Any] | None = None
    notes: list[str] = Field(default_factory=list)
    blocked: str | None = None

    @property
    def changes_nothing(self) -> bool:
        return not (self.create or self.update or self.start or self.open_poll)

    def steps(self) -> list[str]:
        """The changes in the order apply makes them, worded the same for a dry run."""
        steps: list[str] = []
        if self.create is not None:
            steps.append(f"create session {self.create['title']!r}")
        if self.update:
            steps.append(f"update {', '.join(sorted(self.update))}")
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
) -> Plan:
    """The changes that bring the server's session (``existing``, or none) to ``spec``.

    ``live_elsewhere`` is another of the artist's sessions that is live now, if any.
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
