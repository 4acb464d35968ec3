"""Frames in, view model out: the console's protocol logic, apart from any widget or socket.

:func:`apply_frame` takes one server frame (or a ``connection.state`` pseudo-frame of the
client), updates :class:`~.model.ConsoleState` in place and returns an :class:`Update` that
says which parts of the screen changed and whether to tell the producer something.
Unknown frame types change nothing, so a newer server does not break an older console.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.ledger import MINOR_UNITS
from broker.models import is_poll_tally
from vstudio_cli.console.errors import plain_error
from vstudio_cli.console.model import (
    ChatLine,
    ConsoleState,
    Link,
    PollView,
    TipLine,
    mute_key,
)

__all__ = ["Update", "apply_frame", "chat_line", "poll_view"]


@dataclass(slots=True)
class Update:
    """What one frame changed: screen parts, chat lines to append, a notice for the producer.

    ``parts`` names what must be redrawn ("chat" there means the whole chat: after a resync);
    new chat lines come in ``chat_added`` and lines that changed (deleted, author muted) in
    ``chat_changed``, so the screen touches only those rows.
    """

    parts: set[str] = field(default_factory=set)
    chat_added: list[ChatLine] = field(default_factory=list)
    chat_changed: list[ChatLine] = field(default_factory=list)
    notice: str | None = None
    severity: str = "information"

    def __bool__(self) -> bool:
        return bool(self.parts or self.chat_added or self.chat_changed or self.notice)


def chat_line(message: dict[str, Any]) -> ChatLine:
    """A NormalizedChatMessage (wire shape) as a console line."""
    return ChatLine(
        id=str(message["id"]),
        platform=str(message.get("platform", "audifi")),
        username=str(message.get("username", "?")),
        display_name=message.get("displayName"),
        text=str(message.get("text", "")),
        timestamp=int(message.get("timestamp", 0)),
        user_id=message.get("userId"),
        badges=list(message.get("badges") or []),
        is_subscriber=bool(message.get("isSubscriber")),
        is_moderator=bool(message.get("isModerator")),
        emotes=[
            (int(start), int(end), str(emote.get("name", "")))
            for emote in message.get("emotes") or []
            for start, end in emote.get("positions") or []
        ],
    )


def poll_view(poll: dict[str, Any]) -> PollView:
    """A Poll (wire shape) as the console's poll."""
    options = [str(option) for option in poll.get("options", [])]
    results = [int(count) for count in poll.get("results") or []]
    return PollView(
        id=str(poll.get("id") or poll.get("pollId")),
        question=str(poll.get("question", "")),
        options=options,
        results=_aligned(results, len(options)),
        allow_multiple=bool(poll.get("allowMultiple")),
        status=str(poll.get("status", "active")),
        ends_at=poll.get("endsAt"),
        total_votes=poll.get("totalVotes"),
        gated=poll.get("gated") is True,
    )


def _aligned(results: list[int], size: int) -> list[int]:
    return (results + [0] * size)[:size] if size else results


def _session_fields(state: ConsoleState, fields: dict[str, Any]) -> bool:
    """Copy the session fields the console shows; True if any was present."""
    seen = False
    for wire, attr in (
        ("title", "title"),
        ("status", "status"),
        ("artistId", "artist_id"),
        ("chatEnabled", "chat_enabled"),
        ("reactionsEnabled", "reactions_enabled"),
        ("viewerCount", "viewer_count"),
        ("holderCount", "holder_count"),
    ):
        if wire in fields and fields[wire] is not None:
            setattr(state, attr, fields[wire])
            seen = True
    return seen


def _add_chat(state: ConsoleState, messages: list[dict[str, Any]], update: Update) -> None:
    known = {line.id for line in state.chat}
    for message in messages:
        if not isinstance(message, dict) or "id" not in message or message["id"] in known:
            continue
        line = chat_line(message)
        known.add(line.id)
        state.chat.append(line)
        update.chat_added.append(line)


def _pick_poll(polls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The active poll, else the most recently created one."""
    if not polls:
        return None
    active = [poll for poll in polls if poll.get("status", "active") == "active"]
    chosen = active or polls
    return max(chosen, key=lambda poll: poll.get("createdAt") or 0)


def _on_state(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    session = payload.get("session")
    _session_fields(state, session if isinstance(session, dict) else {})
    _session_fields(state, payload)
    update.parts.add("status")
    polls = payload.get("polls")
    poll = payload.get("activePoll") or payload.get("poll")
    if poll is None and isinstance(polls, list):
        poll = _pick_poll([p for p in polls if isinstance(p, dict)])
    if isinstance(poll, dict):
        state.poll = poll_view(poll)
        update.parts.add("poll")
    totals = payload.get("tipTotals")
    if isinstance(totals, dict):
        state.tip_totals = {str(k): float(v) for k, v in totals.items()}
        update.parts.add("tips")
    ledger = payload.get("ledgerTotals")
    if isinstance(ledger, dict):
        state.ledger_totals = {
            str(platform): {str(c): float(v) for c, v in amounts.items()}
            for platform, amounts in ledger.items()
            if isinstance(amounts, dict)
        }
        update.parts.add("tips")
    muted = payload.get("mutedUsers")
    if isinstance(muted, list):
        state.muted = {str(user) for user in muted}
        update.parts.update({"chat", "muted"})
    names = payload.get("mutedNames")
    if isinstance(names, list):
        state.muted_names = {
            str(entry["userId"]): (str(entry.get("platform") or "audifi"), _who(entry))
            for entry in names
            if isinstance(entry, dict) and entry.get("userId")
        }
        update.parts.add("muted")
    recent = payload.get("recentChat")
    if isinstance(recent, list):
        _add_chat(state, recent, update)
    if "recovered" in payload:
        state.link = Link.RESUMED
        recovered = bool(payload["recovered"])
        state.link_detail = None if recovered else "missed events; state refreshed"


def _on_presence(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    if payload.get("viewerCount") is not None:
        state.viewer_count = int(payload["viewerCount"])
        update.parts.add("status")


def _on_update(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    before = (state.chat_enabled, state.reactions_enabled)
    if _session_fields(state, payload):
        update.parts.add("status")
    if (state.chat_enabled, state.reactions_enabled) != before:
        chat = "on" if state.chat_enabled else "off"
        reactions = "on" if state.reactions_enabled else "off"
        update.notice = f"Fan chat is {chat}, reactions are {reactions}"


def _on_end(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    state.status = "ended"
    update.parts.add("status")
    who = payload.get("endedBy")
    update.notice = f"The session has ended (by {who})" if who else "The session has ended"
    update.severity = "warning"


def _unwrapped(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """``payload[key]`` when the object came wrapped in it, else ``payload`` itself."""
    inner = payload.get(key)
    return inner if isinstance(inner, dict) else payload


def _on_poll(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    poll = _unwrapped(payload, "poll")
    poll_id = str(poll.get("id") or poll.get("pollId") or "")
    current = state.poll
    if current is not None and current.id == poll_id:
        if "question" in poll:
            current.question = str(poll["question"])
        if "options" in poll:
            current.options = [str(option) for option in poll["options"]]
        if "results" in poll:
            current.results = [int(count) for count in poll["results"]]
        current.results = _aligned(current.results, len(current.options))
        if "endsAt" in poll:
            current.ends_at = poll["endsAt"]
        if poll.get("status"):
            current.status = str(poll["status"])
    elif "options" in poll:
        state.poll = poll_view(poll)
    else:
        return
    update.parts.add("poll")


def _on_poll_update(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    """``poll.update`` is a live tally ``{pollId, results, totalVotes}`` or an edit of the poll."""
    if is_poll_tally(payload):
        _on_results(state, payload, update)
    else:
        _on_poll(state, payload, update)


def _on_poll_create(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    poll = _unwrapped(payload, "poll")
    state.poll = poll_view(poll)
    update.parts.add("poll")


def _on_poll_end(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    _on_poll(state, payload, update)
    poll_id = str(payload.get("pollId") or payload.get("id") or "")
    if state.poll is not None and state.poll.id == poll_id:
        state.poll.status = "ended"
        update.parts.add("poll")


def _on_results(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    poll = state.poll
    if poll is None or poll.id != str(payload.get("pollId")):
        return
    if poll.status == "ended" and not payload.get("final"):
        return  # counts from before the end, arriving late: the final ones stand
    poll.results = _aligned([int(count) for count in payload.get("results", [])], len(poll.options))
    if payload.get("totalVotes") is not None:
        poll.total_votes = int(payload["totalVotes"])
    if payload.get("final"):
        poll.status = "ended"
    update.parts.add("poll")


def _on_final_results(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    """``poll.results`` is only ever the final tally, sent when the poll ends."""
    _on_results(state, {**payload, "final": True}, update)


def _on_aggregate(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    _add_chat(state, list(payload.get("messages", [])), update)


def _on_chat_message(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    message = _unwrapped(payload, "message")
    _add_chat(state, [message], update)


EVENT_WORDS = {
    "gift": "sent {detail} ×{count}",
    "cheer": "cheered {count} bits",
    "superchat": "Super Chat {detail}",
    "supersticker": "Super Sticker {detail}",
    "sub": "subscribed {detail}",
    "resub": "resubscribed {detail}",
    "giftbomb": "gifted {count} subs {detail}",
    "membergift": "gifted {count} memberships {detail}",
    "member": "became a member {detail}",
    "raid": "raided with {count} viewers",
    "follow": "followed",
    "announcement": "announced",
}
"""Platform events worth a line in the chat; likes, shares and the single lines of a gift bomb
would drown it."""


def _who(entry: dict[str, Any]) -> str:
    return str(entry.get("username") or entry.get("userId") or "?")


def _on_money(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    """A platform event with money joins the money panel and its platform's total."""
    minor, currency = payload.get("amountMinor"), payload.get("currency")
    event_id = str(payload.get("id", ""))
    if not isinstance(minor, int) or not isinstance(currency, str) or not event_id:
        return
    if payload.get("sourceChannel"):
        return  # sent in another shared chat channel: that artist's money (broker.ledger)
    if any(tip.tip_id == event_id for tip in state.tips):
        return
    places = MINOR_UNITS.get(currency, 2)
    amount = minor / 10**places
    platform = str(payload.get("platform", ""))
    state.tips.appendleft(
        TipLine(
            tip_id=event_id,
            username=str(payload.get("displayName") or payload.get("username") or "?"),
            amount=amount,
            currency=currency,
            message=payload.get("message"),
            platform=platform,
            kind=str(payload.get("kind", "")),
        )
    )
    totals = state.ledger_totals.setdefault(platform, {})
    totals[currency] = round(totals.get(currency, 0.0) + amount, places)
    update.parts.add("tips")


def _on_platform_event(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    _on_money(state, payload, update)
    kind = str(payload.get("kind", ""))
    if kind not in EVENT_WORDS or "id" not in payload or state.find_message(str(payload["id"])):
        return
    words = EVENT_WORDS[kind].format(
        detail=payload.get("detail") or "", count=payload.get("count") or 1
    )
    line = ChatLine(
        id=str(payload["id"]),
        platform=str(payload.get("platform", "")),
        username=str(payload.get("username", "?")),
        display_name=payload.get("displayName"),
        text=" ".join(words.split()),
        timestamp=int(payload.get("timestamp") or 0),
        event=kind,
    )
    state.chat.append(line)
    update.chat_added.append(line)


def _on_delete(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    message_id = payload.get("messageId")
    username, platform = payload.get("username"), payload.get("platform")
    user_id = payload.get("userId")
    for line in state.chat:
        same_user = (
            line.user_id == user_id if user_id else username in ("*", line.username)
        )  # "*": the platform's whole chat
        if (message_id and line.id == message_id) or (
            not message_id and same_user and line.platform == platform
        ):
            line.deleted = True
            update.chat_changed.append(line)


def _on_mute(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    user_id = payload.get("userId")
    if not user_id:
        return
    user_id = str(user_id)
    platform = str(payload.get("platform") or "audifi")
    known = state.muted_names.get(user_id)
    name = str(payload.get("username") or (known[1] if known else user_id))
    who = f"{name} ({platform})" if platform != "audifi" else name
    if payload.get("muted", True):
        state.muted.add(user_id)
        state.muted_names[user_id] = (platform, name)
        update.notice = f"{who} is muted"
    else:
        state.muted.discard(user_id)
        state.muted_names.pop(user_id, None)
        update.notice = f"{who} may chat again"
    update.parts.add("muted")
    update.chat_changed.extend(line for line in state.chat if mute_key(line) == user_id)


def _on_burst(state: ConsoleState, payload: dict[str, Any], update: Update, at: int) -> None:
    counts = {str(k): int(v) for k, v in (payload.get("counts") or {}).items() if int(v) > 0}
    meter = state.reactions
    if payload.get("window"):
        meter.window_ms = int(payload["window"])
    for emoji, count in counts.items():
        meter.totals[emoji] = meter.totals.get(emoji, 0) + count
    meter.recent.append((at, counts))
    update.parts.add("reactions")


def _on_tip(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    tip_id = str(payload.get("tipId", ""))
    if any(tip.tip_id == tip_id for tip in state.tips):
        return
    tip = TipLine(
        platform="audifi",
        tip_id=tip_id,
        username=str(payload.get("username") or payload.get("userId") or "?"),
        amount=float(payload.get("amount", 0)),
        currency=str(payload.get("currency", "")),
        message=payload.get("message"),
    )
    state.tips.appendleft(tip)
    totals = payload.get("totals")
    if isinstance(totals, dict):  # the server's totals only grow: keep the larger
        for currency, amount in totals.items():
            state.tip_totals[currency] = max(state.tip_totals.get(currency, 0.0), float(amount))
    else:
        total = state.tip_totals.get(tip.currency, 0.0) + tip.amount
        state.tip_totals[tip.currency] = round(total, 2)
    # fans' tips are the ledger's audifi part: the tip totals are exactly that
    state.ledger_totals["audifi"] = dict(state.tip_totals)
    update.parts.add("tips")


def _on_announcement(
    state: ConsoleState, payload: dict[str, Any], update: Update, frame: dict[str, Any]
) -> None:
    """An operator's (or the artist's) notice: a line in the chat and a toast."""
    text = str(payload.get("text") or "").strip()
    if not text:
        return
    at = int(frame.get("timestamp") or 0)
    line_id = str(frame.get("id") or f"announcement:{at}:{len(state.chat)}")
    if state.find_message(line_id):
        return
    line = ChatLine(
        id=line_id,
        platform="",
        username=str(payload.get("by") or "announcement"),
        text=f"📣 {text}",
        timestamp=at,
        event="announcement",
    )
    state.chat.append(line)
    update.chat_added.append(line)
    everyone = "" if payload.get("sessionId") else " (every session)"
    update.notice = f"Announcement{everyone}: {text}"


def _on_error(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    code, message = payload.get("code"), payload.get("message")
    update.notice = plain_error(code, message, payload.get("retryAfter"))
    update.severity = "error"


def _on_connection(state: ConsoleState, payload: dict[str, Any], update: Update) -> None:
    name = payload.get("state")
    if name == "live":
        resumed = payload.get("resumed") or state.link in (Link.RECONNECTING, Link.RESUMED)
        state.link = Link.RESUMED if resumed else Link.LIVE
        recovered = payload.get("recovered")
        state.link_detail = None if recovered is not False else "missed events: state refreshed"
    elif name == "reconnecting":
        state.link = Link.RECONNECTING
        state.link_detail = payload.get("reason")
    elif name == "closed":
        state.link = Link.CLOSED
        state.link_detail = payload.get("reason")
        update.notice = f"Disconnected: {state.link_detail}" if state.link_detail else None
        update.severity = "error"
    elif name == "connecting":
        state.link = Link.CONNECTING
    else:
        return
    update.parts.add("status")


Reducer = Callable[[ConsoleState, dict[str, Any], Update], None]

REDUCERS: dict[str, Reducer] = {
    "session.state": _on_state,
    "session.join": _on_presence,
    "session.leave": _on_presence,
    "session.update": _on_update,
    "session.end": _on_end,
    "poll.create": _on_poll_create,
    "poll.update": _on_poll_update,
    "poll.end": _on_poll_end,
    "poll.results": _on_final_results,
    "chat.aggregate": _on_aggregate,
    "chat.message": _on_chat_message,
    "chat.delete": _on_delete,
    "chat.mute": _on_mute,
    "tip.received": _on_tip,
    "platform.event": _on_platform_event,
    "error": _on_error,
    "connection.state": _on_connection,
}


def apply_frame(state: ConsoleState, frame: dict[str, Any]) -> Update:
    """Apply one frame to ``state``; what changed comes back as an :class:`Update`."""
    update = Update()
    kind = frame.get("type")
    payload = frame.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    if kind == "reaction.burst":
        _on_burst(state, payload, update, int(frame.get("timestamp") or 0))
    elif kind == "announcement":
        _on_announcement(state, payload, update, frame)
    elif isinstance(kind, str) and kind in REDUCERS:
        REDUCERS[kind](state, payload, update)
    if kind != "connection.state" and state.link is Link.RECONNECTING:
        state.link = Link.RESUMED
        update.parts.add("status")
    return update
