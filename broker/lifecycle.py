"""The session lifecycle as an explicit state machine: ``scheduled -> live -> ended``."""

from __future__ import annotations

from broker.models import SessionStatus

__all__ = ["ALLOWED", "IllegalTransition", "check_transition"]

ALLOWED: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.SCHEDULED: frozenset({SessionStatus.LIVE, SessionStatus.ENDED}),
    SessionStatus.LIVE: frozenset({SessionStatus.ENDED}),
    SessionStatus.ENDED: frozenset(),
}
"""A scheduled session may be cancelled (ended) before it goes live; nothing leaves ``ended``."""


class IllegalTransition(ValueError):
    """A lifecycle change the state machine does not allow."""


def check_transition(current: SessionStatus, target: SessionStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is allowed."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"a {current} session cannot become {target}")
