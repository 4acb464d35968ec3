"""The contract that crosses process boundaries: message models, key names, the Redis bus."""

from broker.bus import Bus, BusEvent, OutgoingEvent, Replay
from broker.connection import BusUnavailable, connect
from broker.embedded import EmbeddedRedis, EmbeddedServerError
from broker.feed import Resumed, SessionFeed

__all__ = [
    "Bus",
    "BusEvent",
    "BusUnavailable",
    "EmbeddedRedis",
    "EmbeddedServerError",
    "OutgoingEvent",
    "Replay",
    "Resumed",
    "SessionFeed",
    "connect",
]
