"""The wire contract as pydantic models: the envelope, every message type, chat, sessions, polls.

Field names on the wire are camelCase and timestamps are Unix milliseconds. Client frames are
checked by :func:`parse_client_frame`, which turns anything the contract does not allow into a
:class:`ProtocolError` carrying the error code and a reason a person can act on.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "CLIENT_PAYLOADS",
    "PSEUDO_CURRENCIES",
    "Announcement",
    "ChatAggregate",
    "ChatDelete",
    "ChatMessageIn",
    "ChatMute",
    "ClientFrame",
    "Emote",
    "Envelope",
    "ErrorCode",
    "ErrorPayload",
    "EventKind",
    "MessageType",
    "NormalizedChatMessage",
    "Platform",
    "PlatformEvent",
    "Poll",
    "PollCreate",
    "PollEnd",
    "PollResults",
    "PollStatus",
    "PollTally",
    "PollUpdate",
    "PollVote",
    "Presence",
    "ProtocolError",
    "ReactionBurst",
    "ReactionSend",
    "ReplyParent",
    "RequiredTokens",
    "Role",
    "Session",
    "SessionEnded",
    "SessionJoin",
    "SessionStatus",
    "SessionUpdate",
    "TipReceived",
    "TipSend",
    "TokenRequirement",
    "is_poll_tally",
    "now_ms",
    "parse_client_frame",
    "platform_mute_key",
    "token_requirements",
]

MAX_CHAT_TEXT = 2000
"""Hard ceiling on any chat text on the bus; the server's fan limit is a smaller setting."""


def now_ms() -> int:
    """The wire's clock: Unix time in milliseconds."""
    return int(time.time() * 1000)


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused.

    Numbers and flags that clients send are ``strict``: ``true``, ``"1"`` or ``1.0`` for an
    index is a mistake to report (4006), not a value to guess.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as clients see it."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ErrorCode(IntEnum):
    """Error codes: the payload ``code`` of an ``error`` frame and the WebSocket close code."""

    INVALID_TICKET = 4000
    SESSION_NOT_FOUND = 4001
    SESSION_ENDED = 4002
    RATE_LIMITED = 4003
    FORBIDDEN = 4004
    TOKEN_GATE_FAILED = 4005
    INVALID_MESSAGE = 4006
    MESSAGE_TOO_LARGE = 4007
    SESSION_FULL = 4008
    UNAVAILABLE = 4009
    """Redis is unreachable for a moment: nothing was done; try again after ``retryAfter``."""


class ProtocolError(Exception):
    """Something a client sent or asked for that the contract refuses."""

    def __init__(self, code: ErrorCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        """The ``error`` frame's payload."""
        body: dict[str, Any] = {"code": int(self.code), "message": self.message}
        if self.retry_after is not None:
            body["retryAfter"] = round(self.retry_after, 3)
        return body


class MessageType(StrEnum):
    """Every ``type`` of the envelope."""

    SESSION_STATE = "session.state"
    SESSION_JOIN = "session.join"
    SESSION_LEAVE = "session.leave"
    SESSION_END = "session.end"
    SESSION_UPDATE = "session.update"
    POLL_CREATE = "poll.create"
    POLL_UPDATE = "poll.update"
    POLL_END = "poll.end"
    POLL_VOTE = "poll.vote"
    POLL_RESULTS = "poll.results"
    CHAT_MESSAGE = "chat.message"
    CHAT_AGGREGATE = "chat.aggregate"
    CHAT_DELETE = "chat.delete"
    CHAT_MUTE = "chat.mute"
    REACTION_SEND = "reaction.send"
    REACTION_BURST = "reaction.burst"
    TIP_SEND = "tip.send"
    TIP_RECEIVED = "tip.received"
    PLATFORM_EVENT = "platform.event"
    ANNOUNCEMENT = "announcement"
    ERROR = "error"
    PING = "ping"
    PONG = "pong"


class Role(StrEnum):
    """What a ticket lets a connection do."""

    ARTIST = "artist"
    PRODUCER = "producer"
    TOKEN_HOLDER = "token_holder"
    VIEWER = "viewer"


class Platform(StrEnum):
    """Where a chat message came from; ``audifi`` is a fan's own message."""

    TWITCH = "twitch"
    YOUTUBE = "youtube"
    TIKTOK = "tiktok"
    DISCORD = "discord"
    AUDIFI = "audifi"


class Envelope(WireModel):
    """``{type, payload, timestamp, requestId?, id?}``: every frame in both directions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: int = Field(default_factory=now_ms)
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    id: str | None = None


# --- chat -------------------------------------------------------------------------------------


class Emote(WireModel):
    """An emote inside a chat message: its name, image and character positions."""

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(max_length=500)
    positions: list[tuple[int, int]] = Field(
        default_factory=list, description="inclusive start/end character indexes in text"
    )


class ReplyParent(WireModel):
    """The message a chat message answers (Twitch ``reply-parent-*``, Discord replies)."""

    id: str = Field(min_length=1, max_length=200)
    username: str | None = Field(default=None, max_length=100)
    display_name: str | None = Field(default=None, max_length=100)
    text: str | None = Field(default=None, max_length=MAX_CHAT_TEXT)


class NormalizedChatMessage(WireModel):
    """One chat message from any platform, in the one shape every client renders."""

    id: str = Field(min_length=3, max_length=200, description="<platform>:<platform id>")
    platform: Platform
    username: str = Field(min_length=1, max_length=100)
    display_name: str | None = Field(default=None, max_length=100)
    text: str = Field(max_length=MAX_CHAT_TEXT)
    badges: list[str] | None = None
    is_subscriber: bool | None = None
    is_moderator: bool | None = None
    timestamp: int = Field(ge=0)
    emotes: list[Emote] | None = None
    user_id: str | None = Field(default=None, max_length=200)
    reply_parent: ReplyParent | None = None
    first_message: bool | None = None
    highlighted: bool | None = None
    source_channel: str | None = Field(
        default=None, max_length=100, description="shared chat: the channel it was sent in"
    )
    thread: str | None = Field(default=None, max_length=200, description="Discord thread name")

    @model_validator(mode="after")
    def _id_names_platform(self) -> NormalizedChatMessage:
        if not self.id.startswith(f"{self.platform.value}:"):
            raise ValueError(f"id must start with '{self.platform.value}:' (got {self.id!r})")
        return self


INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters that draw nothing: the Hangul fillers and the braille blank."""


def _visible(char: str) -> bool:
    """Whether ``char`` draws something: not a space, a control, a format character (zero
    width, bidi) or a filler."""
    return unicodedata.category(char)[0] not in "ZC" and char not in INVISIBLE


class ChatMessageIn(WireModel):
    """A fan's ``chat.message``: only the text; the server fills in the rest."""

    text: str = Field(min_length=1, max_length=MAX_CHAT_TEXT)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not any(_visible(char) for char in value):
            raise ValueError("text must not be blank (only spaces or invisible characters)")
        return value


class ChatAggregate(WireModel):
    """A batch of chat from every platform, coalesced over a short window."""

    messages: list[NormalizedChatMessage]


class ChatDelete(WireModel):
    """Remove a message for everyone (moderation, or the platform deleted it).

    With ``username`` (or ``userId``) and ``platform`` instead of a message id it removes every
    message of that user on that platform (a Twitch CLEARCHAT for a ban; a YouTube ban, which
    names the author's channel id: display names on YouTube are not unique).
    """

    message_id: str | None = Field(default=None, min_length=1, max_length=200)
    username: str | None = Field(default=None, min_length=1, max_length=100)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    platform: Platform | None = None
    reason: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _says_what(self) -> ChatDelete:
        by_user = self.username is not None or self.user_id is not None
        if self.message_id is None and (not by_user or self.platform is None):
            raise ValueError("give messageId, or username (or userId) and platform")
        return self


EventKind = Literal[
    "cheer",
    "superchat",
    "supersticker",
    "gift",
    "sub",
    "resub",
    "giftsub",
    "giftbomb",
    "subupgrade",
    "payforward",
    "raid",
    "follow",
    "like",
    "share",
    "member",
    "membergift",
    "milestone",
    "announcement",
    "reward",
    "poll",
    "question",
    "viewers",
]
"""The closed set of platform event kinds; ``docs/platform-events.md`` says which platform
event becomes which kind."""

PSEUDO_CURRENCIES: dict[str, str] = {
    "BITS": "Twitch Bits, 1 minor unit = 1 bit",
    "DIAMONDS": "TikTok diamonds, 1 minor unit = 1 diamond",
}
"""Money that is not fiat: kept in its own unit, converted to USD only by a setting."""

CURRENCY_PATTERN = r"^([A-Z]{3}|BITS|DIAMONDS)$"
"""ISO 4217 codes, or one of :data:`PSEUDO_CURRENCIES`."""


class PlatformEvent(WireModel):
    """Something other than chat that a platform reports: a cheer, Super Chat, gift, sub, raid.

    Money is ``amountMinor`` in ``currency``'s minor units (cents; 1 bit; 1 diamond) and is
    counted in the session's ledger once, by ``id``. ``count`` is how many of the thing the
    event stands for (viewers of a raid, subs of a gift bomb, likes of a batch); an individual
    gift line that a gift bomb already counted carries ``count: 0`` and the bomb's ``groupId``.
    """

    id: str = Field(min_length=3, max_length=200, description="<platform>:<platform id>")
    platform: Platform
    kind: EventKind
    username: str = Field(min_length=1, max_length=100)
    display_name: str | None = Field(default=None, max_length=100)
    count: int | None = Field(default=None, ge=0, description="likes, gifts, viewers, subs")
    detail: str | None = Field(default=None, max_length=300, description="gift name, tier...")
    timestamp: int = Field(ge=0)
    user_id: str | None = Field(default=None, max_length=200)
    amount_minor: int | None = Field(default=None, ge=0, description="money, in minor units")
    currency: str | None = Field(default=None, pattern=CURRENCY_PATTERN)
    tier: str | None = Field(default=None, max_length=50, description="sub plan, Super Chat tier")
    months: int | None = Field(default=None, ge=0, description="cumulative months")
    recipient: str | None = Field(default=None, max_length=100)
    recipient_display_name: str | None = Field(default=None, max_length=100)
    group_id: str | None = Field(default=None, max_length=200, description="the gift bomb's id")
    message: str | None = Field(default=None, max_length=MAX_CHAT_TEXT)
    source_channel: str | None = Field(default=None, max_length=100, description="shared chat")

    @model_validator(mode="after")
    def _money_has_a_currency(self) -> PlatformEvent:
        if (self.amount_minor is None) != (self.currency is None):
            raise ValueError("amountMinor and currency come together")
        return self


class ChatMute(WireModel):
    """Mute or unmute a user's chat in this session.

    A fan is named by their user id. A platform user is named ``<platform>:<platform user
    id>`` (``twitch:4242``; see :func:`platform_mute_key`) with ``platform`` and ``username``
    so people see who it is; their ingested messages then stop reaching the session.
    """

    user_id: str = Field(min_length=1, max_length=200)
    muted: bool = Field(default=True, strict=True)
    platform: Platform | None = None
    username: str | None = Field(default=None, min_length=1, max_length=100)


def platform_mute_key(message: NormalizedChatMessage) -> str | None:
    """The mute key of a platform message's author (``twitch:4242``), ``None`` for a fan's
    own message: fans are muted by their user id and the server refuses their chat."""
    if message.platform is Platform.AUDIFI:
        return None
    return f"{message.platform.value}:{message.user_id or message.username}"


# --- sessions ---------------------------------------------------------------------------------


class SessionStatus(StrEnum):
    """A session's lifecycle: ``scheduled -> live -> ended``, nothing else."""

    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class TokenRequirement(WireModel):
    """The seed's ``requiredTokens``: hold at least ``minBalance`` of the token at
    ``contractAddress`` (an EVM address, ``0x`` and 40 hex digits)."""

    contract_address: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    min_balance: Annotated[StrictInt | StrictFloat, Field(ge=0, allow_inf_nan=False)]
    # issue 16, additions to the seed's shape: which chain, which standard, which ERC-1155 id
    chain_id: StrictInt | None = Field(default=None, ge=1, description="default: eth_chain_id")
    standard: Literal["erc20", "erc721", "erc1155"] | None = Field(
        default=None, description="default: erc1155 with tokenId, else told by decimals()"
    )
    token_id: StrictInt | None = Field(
        default=None, ge=0, description="the ERC-1155 id (a uint256); names an ERC-1155 token"
    )

    @model_validator(mode="after")
    def _standard_fits(self) -> TokenRequirement:
        if self.token_id is not None and self.token_id >= 2**256:
            raise ValueError("tokenId must fit in a uint256")
        if self.token_id is not None and self.standard not in (None, "erc1155"):
            raise ValueError("tokenId names an ERC-1155 token; standard must be erc1155")
        if self.standard == "erc1155" and self.token_id is None:
            raise ValueError("an erc1155 requirement needs the tokenId it counts")
        return self


RequiredTokens = TokenRequirement | list[TokenRequirement]
"""One requirement, as in the seed's data model, or a list of them (each must be met)."""


def token_requirements(required: RequiredTokens | None) -> list[TokenRequirement]:
    """A session's ``requiredTokens`` as a list, whichever shape it was given in."""
    if required is None:
        return []
    return list(required) if isinstance(required, list) else [required]


class Session(WireModel):
    """A session's record as clients see it."""

    id: str
    artist_id: str
    title: str = Field(min_length=1, max_length=200)
    stream_url: str | None = Field(default=None, max_length=500)
    stream_platform: Literal["twitch", "youtube", "tiktok", "other"] | None = None
    status: SessionStatus = SessionStatus.SCHEDULED
    scheduled_start: int | None = None
    actual_start: int | None = None
    ended_at: int | None = None
    chat_enabled: bool = True
    reactions_enabled: bool = True
    allow_guests: bool = False
    producer_ids: list[str] = Field(default_factory=list)
    required_tokens: RequiredTokens | None = None
    created_at: int = Field(default_factory=now_ms)
    chat_holders_only: bool | None = None
    """Issue 16: only token holders (and staff) may send fan chat; unset is false."""


class SessionUpdate(WireModel):
    """Producer toggles and artist edits; only the fields given change."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    stream_url: str | None = Field(default=None, max_length=500)
    chat_enabled: bool | None = Field(default=None, strict=True)
    reactions_enabled: bool | None = Field(default=None, strict=True)
    allow_guests: bool | None = Field(default=None, strict=True)
    chat_holders_only: bool | None = Field(default=None, strict=True)


class SessionEnded(WireModel):
    """``session.end``: from the artist it is ``{}``; from the server it says who and when."""

    ended_by: str | None = None
    ended_at: int | None = None


class SessionJoin(WireModel):
    """A client's ``session.join``: the seed's ``{sessionId, role, userId}``, each optional.

    The connection's ticket already fixed all three; what the client states is checked
    against it (a mismatch is refused with 4004), never used to change it.
    """

    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    user_id: str | None = Field(default=None, min_length=1, max_length=200)


class Presence(WireModel):
    """``session.join`` / ``session.leave``."""

    user_id: str | None = None
    username: str | None = None
    role: Role | None = None
    viewer_count: int | None = None


# --- polls ------------------------------------------------------------------------------------


class PollStatus(StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


PollOption = Annotated[str, Field(min_length=1, max_length=100)]


class PollCreate(WireModel):
    """``poll.create``: 2 to 10 options, a duration in seconds or open-ended."""

    question: str = Field(min_length=1, max_length=300)
    options: list[PollOption] = Field(min_length=2, max_length=10)
    duration: int | None = Field(default=None, ge=5, le=24 * 3600, strict=True)
    allow_multiple: bool = Field(default=False, strict=True)
    gated: bool | None = Field(default=None, strict=True)
    """Shown and votable only to token holders, the artist and producers (issue 16)."""

    @field_validator("options")
    @classmethod
    def _distinct(cls, options: list[str]) -> list[str]:
        if len({option.strip().casefold() for option in options}) != len(options):
            raise ValueError("options must be distinct")
        return options


class PollUpdate(WireModel):
    """``poll.update``: question and options only before the first vote; duration any time."""

    poll_id: str = Field(min_length=1, max_length=64)
    question: str | None = Field(default=None, min_length=1, max_length=300)
    options: list[PollOption] | None = Field(default=None, min_length=2, max_length=10)
    duration: int | None = Field(default=None, ge=5, le=24 * 3600, strict=True)


class PollEnd(WireModel):
    poll_id: str = Field(min_length=1, max_length=64)


class PollVote(WireModel):
    """``poll.vote``: the seed's ``{pollId, optionIndex}``, one option by its index."""

    poll_id: str = Field(min_length=1, max_length=64)
    option_index: int = Field(ge=0, le=9, strict=True)


class Poll(WireModel):
    """A poll with its counts aligned with the options (``results: [425, 312]``)."""

    id: str
    session_id: str
    question: str
    options: list[str]
    allow_multiple: bool = False
    duration: int | None = None
    status: PollStatus = PollStatus.ACTIVE
    created_at: int = Field(default_factory=now_ms)
    ends_at: int | None = None
    ended_at: int | None = None
    results: list[int] = Field(default_factory=list)
    gated: bool | None = None
    """``true`` for a poll only token holders, the artist and producers see; else absent."""


class PollTally(WireModel):
    """A live tally, sent as ``poll.update`` (the seed's SSE example): counts aligned with the
    options and the votes counted so far. A poll edit is also a ``poll.update``, but it carries
    the whole poll (``id``, ``question``, ``options``...): :func:`is_poll_tally` tells them
    apart."""

    poll_id: str
    results: list[int]
    total_votes: int
    gated: bool | None = None


class PollResults(WireModel):
    """``poll.results``: the final tally, sent once when the poll ends (``final: true``)."""

    poll_id: str
    results: list[int]
    total_votes: int
    final: bool = True
    gated: bool | None = None


def is_poll_tally(payload: Any) -> bool:
    """True for a ``poll.update`` payload that is a live tally, False for a poll edit."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("pollId"), str)
        and isinstance(payload.get("results"), list)
        and "totalVotes" in payload
        and "options" not in payload
    )


# --- reactions and tips -----------------------------------------------------------------------


class ReactionSend(WireModel):
    emoji: str = Field(min_length=1, max_length=16)


class ReactionBurst(WireModel):
    """Reactions summed over one window across every server process."""

    counts: dict[str, int]
    window: int = Field(description="window length in milliseconds")


class TipSend(WireModel):
    amount: float = Field(gt=0, strict=True)
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")
    message: str | None = Field(default=None, max_length=200)


class TipReceived(WireModel):
    """A recorded tip. ``totals`` are the session's totals by currency once it was counted:
    they only grow, so a client keeps the larger of its own and these, and a tip it already
    saw in ``session.state`` is not added twice."""

    tip_id: str
    user_id: str
    username: str
    amount: float
    currency: str
    message: str | None = None
    totals: dict[str, float] | None = None


class Announcement(WireModel):
    """An operator's (or a session's artist's) notice, shown to every client it reaches.

    Without ``sessionId`` it came over ``vstudio:global:announcements`` to every session."""

    text: str = Field(min_length=1, max_length=500)
    session_id: str | None = Field(default=None, min_length=1, max_length=100)
    by: str | None = Field(default=None, max_length=200, description="who announced it")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class ErrorPayload(WireModel):
    code: int
    message: str
    retry_after: float | None = None


class Empty(WireModel):
    """Payload of ``ping``, ``pong``, ``session.leave`` and the artist's ``session.end``."""


# --- client frames ----------------------------------------------------------------------------

CLIENT_PAYLOADS: dict[MessageType, type[WireModel]] = {
    MessageType.SESSION_JOIN: SessionJoin,
    MessageType.SESSION_LEAVE: Empty,
    MessageType.SESSION_END: Empty,
    MessageType.SESSION_UPDATE: SessionUpdate,
    MessageType.POLL_CREATE: PollCreate,
    MessageType.POLL_UPDATE: PollUpdate,
    MessageType.POLL_END: PollEnd,
    MessageType.POLL_VOTE: PollVote,
    MessageType.CHAT_MESSAGE: ChatMessageIn,
    MessageType.CHAT_DELETE: ChatDelete,
    MessageType.CHAT_MUTE: ChatMute,
    MessageType.REACTION_SEND: ReactionSend,
    MessageType.TIP_SEND: TipSend,
    MessageType.PING: Empty,
    MessageType.PONG: Empty,
}
"""What a client may send, and the model its payload must satisfy."""


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A validated client frame: its type, its typed payload, its optional request id.

    A plain record, not a model: its parts are validated already, and building a model per
    frame cost as much as validating the payload (a vote storm builds thousands a second)."""

    type: MessageType
    payload: Any
    request_id: str | None = None


_PLAIN_ENVELOPE_KEYS = frozenset({"type", "payload", "requestId", "timestamp"})


def _plain_envelope(data: dict[str, Any]) -> tuple[str, dict[str, Any], str | None] | None:
    """``(type, payload, requestId)`` of an envelope that :class:`Envelope` would accept as is.

    The common shape is checked by hand (exact types, no coercion); anything else returns
    ``None`` and goes through :class:`Envelope`, which accepts it or says what is wrong."""
    if not _PLAIN_ENVELOPE_KEYS.issuperset(data):
        return None
    kind, payload = data.get("type"), data.get("payload", _NO_PAYLOAD)
    request_id, timestamp = data.get("requestId"), data.get("timestamp", 0)
    if type(kind) is not str or type(timestamp) is not int:
        return None
    if payload is _NO_PAYLOAD:
        payload = {}
    elif type(payload) is not dict:
        return None
    if request_id is not None and (type(request_id) is not str or not 0 < len(request_id) <= 128):
        return None
    return kind, payload, request_id


_NO_PAYLOAD: Any = object()


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "frame"
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{extra}"


def parse_client_frame(raw: str | bytes, max_bytes: int = 4096) -> ClientFrame:
    """Validate one client frame against the contract, or raise :class:`ProtocolError`.

    The size check comes first so an oversized frame is never parsed.
    """
    size = len(raw)
    if isinstance(raw, str) and 4 * size > max_bytes:  # a UTF-8 character is 1 to 4 bytes
        size = len(raw.encode())
    if size > max_bytes:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE, f"frame is {size} bytes; the limit is {max_bytes}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"frame is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "frame must be a JSON object")
    plain = _plain_envelope(data)
    if plain is None:
        try:
            envelope = Envelope.model_validate(data)
        except ValidationError as exc:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, _describe(exc)) from exc
        plain = envelope.type, envelope.payload, envelope.request_id
    type_, body, request_id = plain
    kind = _CLIENT_TYPES.get(type_)
    if kind is None:
        allowed = ", ".join(sorted(CLIENT_PAYLOADS))
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"unknown or server-only message type {type_!r}; clients may send: {allowed}",
        )
    try:
        payload = CLIENT_PAYLOADS[kind].model_validate(body)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{kind}: {_describe(exc)}") from exc
    return ClientFrame(kind, payload, request_id)


_CLIENT_TYPES = {kind.value: kind for kind in CLIENT_PAYLOADS}
