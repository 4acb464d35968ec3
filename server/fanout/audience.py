"""Who may receive a frame: everyone, or only the audience of gated content.

A gated poll's frames (``poll.create``, ``poll.update``, ``poll.end``, ``poll.results`` whose
payload says ``gated: true``) reach token holders, the artist and producers only, on every
process and transport; the same poll is taken out of ``session.state`` for everyone else. The
test is per event, never per client, so the common path (a frame for everyone) pays one
dictionary lookup per event.
"""

from __future__ import annotations

from typing import Any

from broker.bus import BusEvent
from broker.models import Role
from server.identity.participant import Participant

__all__ = ["GATED_AUDIENCE", "for_audience", "is_gated", "sees_gated"]

GATED_AUDIENCE = frozenset({Role.ARTIST, Role.PRODUCER, Role.TOKEN_HOLDER})


def sees_gated(who: Participant) -> bool:
    return who.role in GATED_AUDIENCE


def is_gated(event: BusEvent) -> bool:
    """Whether ``event`` is gated content (only poll events can be)."""
    if event.kind != "polls":
        return False
    payload = event.payload
    return isinstance(payload, dict) and payload.get("gated") is True


def for_audience(state: dict[str, Any], who: Participant) -> dict[str, Any]:
    """``session.state`` as ``who`` may see it: without gated polls unless they may."""
    if sees_gated(who):
        return state
    active = state.get("activePoll")
    polls = state.get("polls")
    hides_active = isinstance(active, dict) and active.get("gated") is True
    hides_some = isinstance(polls, list) and any(
        isinstance(poll, dict) and poll.get("gated") is True for poll in polls
    )
    if not (hides_active or hides_some):
        return state
    shown = dict(state)
    if hides_active:
        shown["activePoll"] = None
    if hides_some:
        assert isinstance(polls, list)
        shown["polls"] = [poll for poll in polls if not poll.get("gated")]
    return shown
