"""Synthetic chat across the four platforms, for demos, load and tests without a platform.

:class:`ChatGenerator` is pure (seeded randomness, the clock passed in): it makes messages that
look like each platform's (ids in each platform's format, badges, subscribers, moderators,
Twitch emotes with positions and CDN URLs, Discord custom emoji), plus an occasional moderator
deletion and platform event. :class:`SimulatedChat` is the adapter that emits them at a rate,
with bursts, through the same runtime as a real platform.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

from broker.models import (
    ChatDelete,
    Emote,
    NormalizedChatMessage,
    Platform,
    PlatformEvent,
    now_ms,
)
from ingest.base import AdapterState, AdapterStatus, Emit, EventKind, IngestItem
from ingest.twitch_map import twitch_emote_url

__all__ = ["PLATFORMS", "ChatGenerator", "SimulatedChat"]

_Event = tuple[EventKind, int | None, str | None]
"""A simulated platform event: kind, count, detail."""

PLATFORMS = (Platform.TWITCH, Platform.YOUTUBE, Platform.TIKTOK, Platform.DISCORD)
PLATFORM_WEIGHTS = (0.45, 0.25, 0.2, 0.1)

TWITCH_EMOTES = {
    "Kappa": "25",
    "LUL": "425618",
    "PogChamp": "305954156",
    "Kreygasm": "41",
    "HeyGuys": "30259",
    "<3": "9",
    "BibleThump": "86",
    "SeemsGood": "64138",
}
DISCORD_EMOJI = {"pepeJAM": "780193541212176404", "catvibe": "812043157043126272"}
FIRST = ["night", "pixel", "lofi", "neon", "moon", "bass", "echo", "velvet", "static", "cosmic"]
SECOND = ["owl", "rider", "kid", "wave", "fox", "ghost", "drop", "dreamer", "beat", "panda"]
PHRASES = [
    "this drop is insane",
    "hello from Brazil",
    "play the new single!!",
    "first time here, loving it",
    "the bass on this one",
    "can you do an acoustic version?",
    "GG",
    "who else has this on repeat",
    "volume up please",
    "that transition was so clean",
    "saludos desde México 🇲🇽",
    "こんばんは!",
    "🔥🔥🔥",
    "encore encore encore",
    "W stream",
]
TWITCH_BADGES = ["subscriber", "vip", "premium", "moderator", "glhf-pledge"]
YOUTUBE_BADGES = ["member", "moderator", "verified"]
TIKTOK_BADGES = ["top_gifter", "subscriber", "moderator"]
DISCORD_BADGES = ["Supporter", "Moderator", "Early Fan"]
DISCORD_EPOCH = 1_420_070_400_000


@dataclass
class ChatGenerator:
    """Makes one realistic message (or deletion, or platform event) at a time."""

    seed: int | None = None
    deletion_share: float = 0.005
    event_share: float = 0.02
    _random: random.Random = field(init=False, repr=False)
    _recent: list[str] = field(default_factory=list, repr=False)
    _counter: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def next_item(self, timestamp: int) -> IngestItem:
        """A message most of the time; now and then a deletion or a platform event."""
        roll = self._random.random()
        if roll < self.deletion_share and self._recent:
            return ChatDelete(message_id=self._random.choice(self._recent), reason="moderator")
        if roll < self.deletion_share + self.event_share:
            return self.platform_event(timestamp)
        return self.message(timestamp)

    def message(self, timestamp: int, platform: Platform | None = None) -> NormalizedChatMessage:
        """One chat message in the style of ``platform`` (chosen by weight when not given)."""
        rnd = self._random
        platform = platform or rnd.choices(PLATFORMS, PLATFORM_WEIGHTS)[0]
        name = f"{rnd.choice(FIRST)}_{rnd.choice(SECOND)}{rnd.randint(1, 999)}"
        text = rnd.choice(PHRASES)
        emotes: list[Emote] | None = None
        if platform is Platform.TWITCH and rnd.random() < 0.4:
            text, emotes = self._with_twitch_emotes(text)
        elif platform is Platform.DISCORD and rnd.random() < 0.2:
            emoji, emoji_id = rnd.choice(list(DISCORD_EMOJI.items()))
            start = len(text) + 1
            token = f"<:{emoji}:{emoji_id}>"
            text = f"{text} {token}"
            url = f"https://cdn.discordapp.com/emojis/{emoji_id}.webp"
            emotes = [Emote(name=emoji, url=url, positions=[(start, start + len(token) - 1)])]
        badges = self._badges(platform)
        moderator = any("moderator" in badge.lower() for badge in badges)
        subscriber = any(b.startswith(("subscriber", "member", "Supporter")) for b in badges)
        message = NormalizedChatMessage(
            id=self._message_id(platform, timestamp),
            platform=platform,
            username=name.lower() if platform is not Platform.DISCORD else name,
            display_name=name.replace("_", " ").title() if rnd.random() < 0.5 else name,
            text=text,
            badges=badges or None,
            is_subscriber=subscriber,
            is_moderator=moderator,
            timestamp=timestamp,
            emotes=emotes,
            user_id=str(rnd.randint(10_000, 999_999_999)),
        )
        self._recent.append(message.id)
        del self._recent[:-50]
        return message

    def platform_event(self, timestamp: int) -> PlatformEvent:
        """A like, gift, follow or subscription, as TikTok and Twitch report them."""
        rnd = self._random
        self._counter += 1
        platform = rnd.choice((Platform.TIKTOK, Platform.TWITCH, Platform.YOUTUBE))
        # Every draw is made whichever platform was picked, so a seed repeats the same chat.
        tiktok: list[_Event] = [
            ("like", rnd.randint(1, 15), None),
            ("gift", rnd.randint(1, 5), "Rose"),
        ]
        twitch: list[_Event] = [
            ("sub", 1, "Tier 1"),
            ("follow", None, None),
            ("raid", 42, None),
        ]
        events: dict[Platform, _Event] = {
            Platform.TIKTOK: rnd.choice(tiktok),
            Platform.TWITCH: rnd.choice(twitch),
            Platform.YOUTUBE: ("member", None, "Fan club"),
        }
        kind, count, detail = events[platform]
        # a Rose is worth one diamond: the demo's TikTok gifts reach the money ledger
        gift = kind == "gift"
        return PlatformEvent(
            id=f"{platform.value}:evt-{uuid.uuid4().hex}",
            platform=platform,
            kind=kind,
            username=f"{rnd.choice(FIRST)}{rnd.choice(SECOND)}",
            count=count,
            detail=detail,
            timestamp=timestamp,
            amount_minor=count if gift else None,
            currency="DIAMONDS" if gift else None,
        )

    def _with_twitch_emotes(self, text: str) -> tuple[str, list[Emote]]:
        names = self._random.sample(list(TWITCH_EMOTES), k=self._random.randint(1, 2))
        positions: dict[str, list[tuple[int, int]]] = {}
        for name in names:
            start = len(text) + 1
            text = f"{text} {name}"
            positions.setdefault(name, []).append((start, start + len(name) - 1))
        emotes = [
            Emote(name=name, url=twitch_emote_url(TWITCH_EMOTES[name]), positions=spots)
            for name, spots in positions.items()
        ]
        return text, emotes

    def _badges(self, platform: Platform) -> list[str]:
        pool = {
            Platform.TWITCH: TWITCH_BADGES,
            Platform.YOUTUBE: YOUTUBE_BADGES,
            Platform.TIKTOK: TIKTOK_BADGES,
            Platform.DISCORD: DISCORD_BADGES,
        }[platform]
        return [badge for badge in pool if self._random.random() < 0.12]

    def _message_id(self, platform: Platform, timestamp: int) -> str:
        self._counter += 1
        if platform is Platform.TWITCH:
            return f"twitch:{uuid.uuid4()}"
        if platform is Platform.YOUTUBE:
            return f"youtube:LCC.{uuid.uuid4().hex}{self._counter:x}"
        if platform is Platform.TIKTOK:
            return f"tiktok:{7_300_000_000_000_000_000 + self._random.getrandbits(56)}"
        snowflake = ((timestamp - DISCORD_EPOCH) << 22) | (self._counter & 0x3FFFFF)
        return f"discord:{snowflake}"


class SimulatedChat:
    """An adapter emitting synthetic chat at ``rate`` items/s, with bursts of ``burst``x."""

    platform = Platform.TWITCH
    source = "simulate"

    def __init__(
        self,
        rate: float,
        *,
        seed: int | None = None,
        bursts: bool = True,
        burst_factor: float = 4.0,
        tick: float = 0.01,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.target = f"{rate:g}/s"
        self.status = AdapterStatus()
        self.generator = ChatGenerator(seed)
        self.bursts = bursts
        self.burst_factor = burst_factor
        self.tick = tick
        self._random = random.Random(seed)

    async def run(self, emit: Emit) -> None:
        """Emit forever at the rate; every ~20 s a burst of a few seconds at ``burst_factor``x."""
        self.status.state = AdapterState.CONNECTED
        self.status.detail = f"simulating {self.target}"
        credit = 0.0
        last = time.monotonic()
        burst_until = 0.0
        next_burst = last + self._random.uniform(10, 30)
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            if self.bursts and now >= next_burst:
                burst_until = now + self._random.uniform(2, 4)
                next_burst = now + self._random.uniform(15, 30)
            rate = self.rate * (self.burst_factor if now < burst_until else 1.0)
            credit += rate * (now - last)
            last = now
            timestamp = now_ms()
            while credit >= 1:
                emit(self.generator.next_item(timestamp))
                credit -= 1
