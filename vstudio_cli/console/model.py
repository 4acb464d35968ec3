"""The producer console's view model: plain dataclasses that the reducer fills from frames.

Nothing here knows Textual or sockets. Widgets read these objects; :mod:`.reducer` changes them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "MAX_CHAT_LINES",
    "MAX_TIPS",
    "PLATFORMS",
    "ChatLine",
    "ConsoleState",
    "Link",
    "PollView",
    "ReactionMeter",
    "TipLine",
    "mute_key",
]

MAX_CHAT_LINES = 500
"""Chat kept in the console; older lines scroll away."""

MAX_TIPS = 50

PLATFORMS = ("twitch", "youtube", "tiktok", "discord", "audifi")
"""Every chat platform, in the order the platform filter cycles through them."""


class Link(StrEnum):
    """The console's connection as the producer sees it."""

    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    RESUMED = "resumed"
    CLOSED = "closed"
    OFFLINE = "offline"


@dataclass(slots=True)
class ChatLine:
    """One chat message as the console shows it."""

    id: str
    platform: str
    username: str
    text: str
    timestamp: int
    display_name: str | None = None
    user_id: str | None = None
    badges: list[str] = field(default_factory=list)
    is_subscriber: bool = False
    is_moderator: bool = False
    deleted: bool = False
    emotes: list[tuple[int, int, str]] = field(default_factory=list)
    """``(start, end inclusive, name)`` of each emote in ``text``."""
    event: str | None = None
    """Set for a platform event shown in the chat (gift, raid...): its kind."""

    @property
    def name(self) -> str:
        return self.display_name or self.username


@dataclass(slots=True)
class PollView:
    """The session's current (or most recent) poll with counts aligned with its options."""

    id: str
    question: str
    options: list[str]
    results: list[int]
    allow_multiple: bool = False
    status: str = "active"
    ends_at: int | None = None
    total_votes: int | None = None
    gated: bool = False
    """Shown to token holders, the artist and producers only."""

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def total(self) -> int:
        """Votes cast (with allowMultiple a voter may count more than once)."""
        return self.total_votes if self.total_votes is not None else sum(self.results)


@dataclass(slots=True)
class TipLine:
    """One entry of the session's money: a fan's tip (platform ``audifi``) or platform money
    (a cheer in BITS, a Super Chat, a TikTok gift in DIAMONDS)."""

    tip_id: str
    username: str
    amount: float
    currency: str
    message: str | None = None
    platform: str = "audifi"
    kind: str = "tip"


def mute_key(line: ChatLine) -> str | None:
    """What muting the line's author mutes: a fan's user id, or ``<platform>:<user id>`` for a
    platform user (the server's key for platform mutes)."""
    if line.platform == "audifi":
        return line.user_id
    who = line.user_id or line.username
    return f"{line.platform}:{who}" if who else None


@dataclass(slots=True)
class ReactionMeter:
    """Reactions per emoji: the totals since the console connected and recent bursts.

    ``recent`` holds ``(timestamp ms, counts)`` of the last bursts so the meter can show a rate
    over a sliding span; :meth:`rate` asks for "now" so it stays a pure function.
    """

    totals: dict[str, int] = field(default_factory=dict)
    recent: deque[tuple[int, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=200))
    window_ms: int = 250

    def rate(self, now_ms: int, span_ms: int = 5000) -> dict[str, float]:
        """Reactions per second of each emoji over the last ``span_ms``."""
        summed: dict[str, int] = {}
        for at, counts in self.recent:
            if now_ms - at <= span_ms:
                for emoji, count in counts.items():
                    summed[emoji] = summed.get(emoji, 0) + count
        return {emoji: count * 1000 / span_ms for emoji, count in summed.items()}


@dataclass(slots=True)
class ConsoleState:
    """Everything the dashboard shows about one session."""

    session_id: str
    title: str = ""
    status: str = "unknown"
    artist_id: str | None = None
    role: str | None = None
    chat_enabled: bool = True
    reactions_enabled: bool = True
    viewer_count: int = 0
    holder_count: int | None = None
    """Token holders the session has seen; ``None`` when it requires no tokens."""
    link: Link = Link.CONNECTING
    link_detail: str | None = None
    chat: deque[ChatLine] = field(default_factory=lambda: deque(maxlen=MAX_CHAT_LINES))
    muted: set[str] = field(default_factory=set)
    poll: PollView | None = None
    reactions: ReactionMeter = field(default_factory=ReactionMeter)
    tips: deque[TipLine] = field(default_factory=lambda: deque(maxlen=MAX_TIPS))
    tip_totals: dict[str, float] = field(default_factory=dict)
    ledger_totals: dict[str, dict[str, float]] = field(default_factory=dict)
    """Every platform's money by currency: ``{"twitch": {"BITS": 300.0}, ...}``."""
    muted_names: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Muted id -> (platform, name), as far as the server or this console knows it."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    """The session's chat sources with the fleet's health (issue 15), read every few seconds."""

    def find_message(self, message_id: str) -> ChatLine | None:
        for line in self.chat:
            if line.id == message_id:
                return line
        return None
