"""Who a connection or a request acts as: one value from the ticket to the handler.

A redeemed ticket, a bearer token checked for SSE or REST, and the console's calls all end in a
:class:`Participant`; the fan-out keeps it on the subscriber and the handlers see it on the
actor, so the user, the session and the role are spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.models import Role

__all__ = ["Participant"]


@dataclass(frozen=True, slots=True)
class Participant:
    """A user in one session with one role."""

    session_id: str
    user_id: str
    username: str
    role: Role
