"""What an ingested item becomes on the bus: its stream kind, event type and dedupe id.

Pure functions, so the mapping is tested without Redis. Chat messages and deletions travel on
the session's ``chat`` kind, platform events on ``events``. A message and a platform event are
deduplicated by their ids (two workers reading one channel publish them once); a deletion of
one message by ``delete:<message id>``. A user-wide deletion has no id of its own and is not
deduplicated: applying it twice removes nothing more. A platform event with money (a cheer, a
Super Chat, a TikTok gift) also carries its ledger entry, recorded once by its id; a chat
message carries its author's mute key, so a muted platform user's messages are not published.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby

from broker.bus import OutgoingEvent, StreamKind
from broker.ledger import ledger_entry
from broker.models import (
    ChatDelete,
    MessageType,
    NormalizedChatMessage,
    PlatformEvent,
    platform_mute_key,
)
from ingest.base import IngestItem

__all__ = ["CLEAR_ALL_USERS", "grouped_by_kind", "to_outgoing"]

CLEAR_ALL_USERS = "*"
"""``ChatDelete.username`` meaning every user of the platform: a whole-chat clear (no platform
allows ``*`` in a username)."""


def to_outgoing(item: IngestItem) -> tuple[StreamKind, OutgoingEvent]:
    """The stream kind and bus event of one ingested item."""
    if isinstance(item, NormalizedChatMessage):
        return "chat", OutgoingEvent(
            MessageType.CHAT_MESSAGE,
            item.wire(),
            dedupe_id=item.id,
            author=platform_mute_key(item),
        )
    if isinstance(item, ChatDelete):
        dedupe = f"delete:{item.message_id}" if item.message_id else None
        return "chat", OutgoingEvent(MessageType.CHAT_DELETE, item.wire(), dedupe_id=dedupe)
    if isinstance(item, PlatformEvent):
        return "events", OutgoingEvent(
            MessageType.PLATFORM_EVENT, item.wire(), dedupe_id=item.id, ledger=ledger_entry(item)
        )
    raise TypeError(f"not an ingest item: {type(item).__name__}")


def grouped_by_kind(
    items: Iterable[IngestItem],
) -> list[tuple[StreamKind, list[OutgoingEvent]]]:
    """Consecutive runs of one kind, in order: one publish call per run keeps the order."""
    converted = (to_outgoing(item) for item in items)
    return [
        (kind, [event for _, event in run]) for kind, run in groupby(converted, key=lambda p: p[0])
    ]
