"""The console's protocol logic without Textual or sockets: frames in, view model out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.models import (
    ChatAggregate,
    NormalizedChatMessage,
    Poll,
    PollResults,
    PollTally,
    ReactionBurst,
    TipReceived,
)
from vstudio_cli.console.errors import plain_error
from vstudio_cli.console.filters import matches, next_platform, visible_lines
from vstudio_cli.console.link import roles_to_try, token_subject
from vstudio_cli.console.model import MAX_CHAT_LINES, ConsoleState, Link
from vstudio_cli.console.poll_input import PollFormError, poll_payload
from vstudio_cli.console.reducer import apply_frame

T0 = 1_764_000_000_000


def frame(kind: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": kind, "payload": payload, "timestamp": T0, **extra}


def chat(index: int, platform: str = "twitch", **fields: Any) -> dict[str, Any]:
    """A chat message validated by the contract's own model, in its wire shape."""
    message = NormalizedChatMessage(
        id=f"{platform}:{index}",
        platform=platform,
        username=fields.pop("username", f"user{index}"),
        text=fields.pop("text", f"message {index}"),
        timestamp=T0 + index,
        **fields,
    )
    return message.wire()


def poll(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "p1",
        "session_id": "s1",
        "question": "Encore?",
        "options": ["Yes", "No"],
        "created_at": T0,
    }
    base.update(fields)
    return Poll(**base).wire()


@pytest.fixture
def state() -> ConsoleState:
    return ConsoleState(session_id="s1")


def test_session_state_fills_the_dashboard(state: ConsoleState) -> None:
    update = apply_frame(
        state,
        frame(
            "session.state",
            {
                "session": {
                    "id": "s1",
                    "artistId": "a1",
                    "title": "Friday",
                    "status": "live",
                    "chatEnabled": False,
                    "reactionsEnabled": True,
                },
                "viewerCount": 42,
                "polls": [
                    poll(id="old", status="ended", created_at=T0 - 10, results=[1, 2]),
                    poll(results=[3, 4]),
                ],
                "tipTotals": {"USD": 12.5},
            },
        ),
    )
    assert (state.title, state.status, state.artist_id) == ("Friday", "live", "a1")
    assert state.chat_enabled is False and state.viewer_count == 42
    assert state.poll is not None and state.poll.id == "p1" and state.poll.results == [3, 4]
    assert state.tip_totals == {"USD": 12.5}
    assert {"status", "poll", "tips"} <= update.parts


SEED_STATE = """{
  "type": "session.state",
  "payload": {
    "sessionId": "abc123",
    "status": "live",
    "viewerCount": 1250,
    "activePoll": {
      "id": "poll_789",
      "question": "Which song next?",
      "options": ["Track A", "Track B"],
      "results": [425, 312],
      "endsAt": 1699123500000
    },
    "chatEnabled": true,
    "reactionsEnabled": false
  },
  "timestamp": 1699123456789
}"""
"""The seed's state example verbatim, but with reactions off so a swapped toggle shows."""


def test_the_seeds_session_state_alone_fills_the_dashboard(state: ConsoleState) -> None:
    update = apply_frame(state, json.loads(SEED_STATE))
    assert (state.status, state.viewer_count) == ("live", 1250)
    assert state.chat_enabled is True and state.reactions_enabled is False
    assert state.poll is not None and state.poll.id == "poll_789" and state.poll.active
    assert state.poll.question == "Which song next?"
    assert state.poll.options == ["Track A", "Track B"] and state.poll.results == [425, 312]
    assert state.poll.ends_at == 1699123500000 and state.poll.total == 737
    assert {"status", "poll"} <= update.parts


def test_session_state_without_an_active_poll_shows_the_latest(state: ConsoleState) -> None:
    polls = [
        poll(id="a", status="ended", created_at=T0),
        poll(id="b", status="ended", created_at=T0 + 5),
    ]
    apply_frame(state, frame("session.state", {"polls": polls, "viewerCount": 1}))
    assert state.poll is not None and state.poll.id == "b" and not state.poll.active


def test_chat_aggregate_appends_new_messages_once(state: ConsoleState) -> None:
    batch = ChatAggregate.model_validate(
        {"messages": [chat(1), chat(2, "youtube", displayName="Maria", isSubscriber=True)]}
    ).wire()
    update = apply_frame(state, frame("chat.aggregate", batch, id="1-0"))
    assert [line.id for line in update.chat_added] == ["twitch:1", "youtube:2"]
    assert state.chat[1].name == "Maria" and state.chat[1].is_subscriber
    again = apply_frame(state, frame("chat.aggregate", {"messages": [chat(2, "youtube"), chat(3)]}))
    assert [line.id for line in again.chat_added] == ["twitch:3"]
    assert len(state.chat) == 3


def test_chat_keeps_only_the_latest_lines(state: ConsoleState) -> None:
    messages = [chat(i) for i in range(MAX_CHAT_LINES + 20)]
    apply_frame(state, frame("chat.aggregate", {"messages": messages}))
    assert len(state.chat) == MAX_CHAT_LINES
    assert state.chat[0].id == "twitch:20"


def test_emotes_show_by_name() -> None:
    from vstudio_cli.console.widgets.chat import message_text

    state = ConsoleState(session_id="s1")
    text = "hi <:catvibe:812043157043126272> Kappa"
    emotes = [
        {"name": "catvibe", "url": "https://cdn.example/e/1.png", "positions": [[3, 31]]},
        {"name": "Kappa", "url": "https://cdn.example/e/2.png", "positions": [[33, 37]]},
    ]
    apply_frame(state, frame("chat.aggregate", {"messages": [chat(1, text=text, emotes=emotes)]}))
    assert message_text(state.chat[0]).plain == "hi :catvibe: :Kappa:"
    state.chat[0].deleted = True
    assert message_text(state.chat[0]).plain == "hi :catvibe: :Kappa: deleted"


def test_platform_events_join_the_chat_once() -> None:
    from broker.models import PlatformEvent
    from vstudio_cli.console.widgets.chat import message_text

    state = ConsoleState(session_id="s1")
    gift = PlatformEvent(
        id="tiktok:g1",
        platform="tiktok",
        kind="gift",
        username="rosa",
        detail="Rose",
        count=5,
        timestamp=T0,
    ).wire()
    like = PlatformEvent(
        id="tiktok:l1", platform="tiktok", kind="like", username="rosa", count=30, timestamp=T0
    ).wire()
    update = apply_frame(state, frame("platform.event", gift))
    apply_frame(state, frame("platform.event", gift))
    apply_frame(state, frame("platform.event", like))
    assert [line.id for line in update.chat_added] == ["tiktok:g1"]
    assert len(state.chat) == 1 and state.chat[0].event == "gift"
    assert message_text(state.chat[0]).plain == "✦ sent Rose ×5"


def test_delete_by_id_and_by_user(state: ConsoleState) -> None:
    messages = [chat(1, username="bob"), chat(2, username="bob"), chat(3, username="eve")]
    apply_frame(state, frame("chat.aggregate", {"messages": messages}))
    update = apply_frame(state, frame("chat.delete", {"messageId": "twitch:3"}))
    assert [line.id for line in update.chat_changed] == ["twitch:3"]
    assert [line.deleted for line in state.chat] == [False, False, True]
    apply_frame(state, frame("chat.delete", {"username": "bob", "platform": "twitch"}))
    assert all(line.deleted for line in state.chat)


def test_a_platform_wide_clear_deletes_that_platforms_chat_only(state: ConsoleState) -> None:
    messages = [chat(1, username="bob"), chat(2, username="eve")]
    apply_frame(state, frame("chat.aggregate", {"messages": messages}))
    apply_frame(state, frame("chat.aggregate", {"messages": [chat(3, platform="youtube")]}))
    apply_frame(state, frame("chat.delete", {"username": "*", "platform": "twitch"}))
    assert [line.deleted for line in state.chat] == [True, True, False]


def test_delete_of_an_unknown_message_changes_nothing(state: ConsoleState) -> None:
    apply_frame(state, frame("chat.aggregate", {"messages": [chat(1)]}))
    assert not apply_frame(state, frame("chat.delete", {"messageId": "twitch:404"}))


def test_mute_and_unmute(state: ConsoleState) -> None:
    messages = [chat(1, user_id="u7"), chat(2, user_id="u8"), chat(3, user_id="u7")]
    apply_frame(state, frame("chat.aggregate", {"messages": messages}))
    # a platform user is muted as <platform>:<user id>, named for people
    muting = {"userId": "twitch:u7", "muted": True, "platform": "twitch", "username": "user1"}
    update = apply_frame(state, frame("chat.mute", muting))
    assert state.muted == {"twitch:u7"} and update.notice == "user1 (twitch) is muted"
    assert state.muted_names == {"twitch:u7": ("twitch", "user1")}
    assert [line.id for line in update.chat_changed] == ["twitch:1", "twitch:3"]
    apply_frame(state, frame("chat.mute", {**muting, "muted": False}))
    assert state.muted == set() and state.muted_names == {}
    # a fan by their user id
    fan = chat(4, platform="audifi", user_id="fan-9")
    apply_frame(state, frame("chat.aggregate", {"messages": [fan]}))
    update = apply_frame(state, frame("chat.mute", {"userId": "fan-9", "muted": True}))
    assert [line.id for line in update.chat_changed] == ["audifi:4"]


def test_platform_money_joins_the_money_panel_once(state: ConsoleState) -> None:
    cheer = {
        "id": "twitch:c1:cheer",
        "platform": "twitch",
        "kind": "cheer",
        "username": "fan",
        "count": 300,
        "amountMinor": 300,
        "currency": "BITS",
        "timestamp": T0,
    }
    superchat = {
        **cheer,
        "id": "youtube:s1:superchat",
        "platform": "youtube",
        "kind": "superchat",
        "amountMinor": 500,
        "currency": "USD",
        "message": "love it",
    }
    shared = {**cheer, "id": "twitch:c2:cheer", "sourceChannel": "222"}  # another channel's
    for payload in (cheer, superchat, cheer, shared):
        apply_frame(state, frame("platform.event", payload))
    assert state.ledger_totals == {"twitch": {"BITS": 300.0}, "youtube": {"USD": 5.0}}
    assert [(t.platform, t.amount, t.currency) for t in state.tips] == [
        ("youtube", 5.0, "USD"),
        ("twitch", 300.0, "BITS"),
    ]
    state_frame = {"ledgerTotals": {"twitch": {"BITS": 900}}, "mutedNames": []}
    apply_frame(state, frame("session.state", state_frame))
    assert state.ledger_totals == {"twitch": {"BITS": 900.0}}  # the server's word wins


def test_poll_lifecycle(state: ConsoleState) -> None:
    apply_frame(state, frame("poll.create", poll(duration=60, ends_at=T0 + 60_000)))
    assert state.poll is not None and state.poll.results == [0, 0] and state.poll.active
    # a live tally is a poll.update {pollId, results, totalVotes}, as in the seed's SSE example
    tally = PollTally(poll_id="p1", results=[5, 2], total_votes=7).wire()
    assert "poll" in apply_frame(state, frame("poll.update", tally)).parts
    assert state.poll.results == [5, 2] and state.poll.total == 7 and state.poll.active
    other = PollTally(poll_id="elsewhere", results=[9, 9], total_votes=18).wire()
    assert not apply_frame(state, frame("poll.update", other))
    apply_frame(state, frame("poll.end", {"pollId": "p1", "results": [6, 2]}))
    assert state.poll.status == "ended" and state.poll.results == [6, 2]


def test_a_tally_older_than_the_final_results_is_ignored(state: ConsoleState) -> None:
    apply_frame(state, frame("poll.create", poll()))
    final = PollResults(poll_id="p1", results=[6, 2], total_votes=8).wire()
    apply_frame(state, frame("poll.results", final))
    assert state.poll is not None and not state.poll.active and state.poll.total == 8
    late = PollTally(poll_id="p1", results=[5, 2], total_votes=7).wire()
    assert not apply_frame(state, frame("poll.update", late))
    assert state.poll.results == [6, 2] and state.poll.total == 8


def test_poll_results_are_final_even_without_the_flag(state: ConsoleState) -> None:
    apply_frame(state, frame("poll.create", poll()))
    apply_frame(state, frame("poll.results", {"pollId": "p1", "results": [1, 1], "totalVotes": 2}))
    assert state.poll is not None and not state.poll.active and state.poll.results == [1, 1]


def test_a_poll_edit_is_told_from_a_tally(state: ConsoleState) -> None:
    apply_frame(state, frame("poll.create", poll()))
    apply_frame(state, frame("poll.update", {"pollId": "p1", "question": "Encore now?"}))
    assert state.poll is not None and state.poll.question == "Encore now?"
    # the server's edit carries the whole poll, results included: it is not a tally
    edited = poll(question="Encore, really?", options=["Yes", "No", "Later"], results=[0, 0, 0])
    apply_frame(state, frame("poll.update", edited))
    assert state.poll.question == "Encore, really?" and state.poll.options[2] == "Later"
    assert state.poll.results == [0, 0, 0] and state.poll.active
    final = PollResults(poll_id="p1", results=[1, 1, 0], total_votes=2).wire()
    apply_frame(state, frame("poll.results", final))
    assert not state.poll.active


def test_reaction_bursts_feed_the_meter(state: ConsoleState) -> None:
    burst = ReactionBurst(counts={"🔥": 10, "❤️": 4}, window=250).wire()
    apply_frame(state, {"type": "reaction.burst", "payload": burst, "timestamp": T0})
    apply_frame(state, {"type": "reaction.burst", "payload": burst, "timestamp": T0 + 250})
    assert state.reactions.totals == {"🔥": 20, "❤️": 8}
    assert state.reactions.rate(T0 + 1000, span_ms=5000) == {"🔥": 4.0, "❤️": 1.6}
    assert state.reactions.rate(T0 + 60_000, span_ms=5000) == {}


def test_tips_are_listed_newest_first_and_totalled_once(state: ConsoleState) -> None:
    first = TipReceived(tip_id="t1", user_id="u1", username="ann", amount=5, currency="USD").wire()
    second = TipReceived(tip_id="t2", user_id="u2", username="bo", amount=2.5, currency="USD")
    apply_frame(state, frame("tip.received", first))
    apply_frame(state, frame("tip.received", second.wire()))
    apply_frame(state, frame("tip.received", first))
    assert [tip.tip_id for tip in state.tips] == ["t2", "t1"]
    assert state.tip_totals == {"USD": 7.5}


def test_a_tip_already_in_the_state_is_not_totalled_again(state: ConsoleState) -> None:
    """A client that joined between a tip's recording and its announcement has it in
    ``tipTotals`` already; the announcement's own totals (never lower) keep it counted once."""
    apply_frame(state, frame("session.state", {"tipTotals": {"USD": 5.0}}))
    tip = TipReceived(tip_id="t1", user_id="u1", username="ann", amount=5, currency="USD")
    apply_frame(state, frame("tip.received", {**tip.wire(), "totals": {"USD": 5.0}}))
    assert state.tip_totals == {"USD": 5.0}


def test_presence_and_session_update(state: ConsoleState) -> None:
    apply_frame(state, frame("session.join", {"userId": "u1", "viewerCount": 3}))
    apply_frame(state, frame("session.leave", {"userId": "u1", "viewerCount": 2}))
    assert state.viewer_count == 2
    update = apply_frame(state, frame("session.update", {"chatEnabled": False}))
    assert state.chat_enabled is False and update.notice == "Fan chat is off, reactions are on"


def test_session_end(state: ConsoleState) -> None:
    update = apply_frame(state, frame("session.end", {"endedBy": "artist", "endedAt": T0}))
    assert state.status == "ended" and "ended" in (update.notice or "")


def test_error_frames_become_plain_notices(state: ConsoleState) -> None:
    update = apply_frame(
        state, frame("error", {"code": 4003, "message": "too many messages", "retryAfter": 2.5})
    )
    assert update.severity == "error"
    assert update.notice == "Slow down: too many messages (try again in 2.5 s)"


def test_connection_states(state: ConsoleState) -> None:
    apply_frame(state, frame("connection.state", {"state": "live"}))
    assert state.link is Link.LIVE
    apply_frame(state, frame("connection.state", {"state": "reconnecting"}))
    assert state.link is Link.RECONNECTING
    apply_frame(state, frame("session.state", {"viewerCount": 1}))
    assert state.link is Link.RESUMED
    apply_frame(state, frame("connection.state", {"state": "reconnecting"}))
    apply_frame(state, frame("connection.state", {"state": "live", "recovered": False}))
    assert state.link is Link.RESUMED and state.link_detail
    update = apply_frame(state, frame("connection.state", {"state": "closed", "reason": "ended"}))
    assert state.link is Link.CLOSED and update.notice == "Disconnected: ended"


def test_announcements_are_a_chat_line_and_a_notice(state: ConsoleState) -> None:
    update = apply_frame(state, frame("announcement", {"text": "maintenance at 17:00"}))
    assert update.notice == "Announcement (every session): maintenance at 17:00"
    assert [line.text for line in update.chat_added] == ["📣 maintenance at 17:00"]
    assert update.chat_added[0].event == "announcement"
    notice = {"text": "encore soon", "sessionId": "s1", "by": "artist1"}
    update = apply_frame(state, frame("announcement", notice, id="5-0"))
    assert update.notice == "Announcement: encore soon"
    assert state.chat[-1].username == "artist1" and state.chat[-1].id == "5-0"
    assert not apply_frame(state, frame("announcement", notice, id="5-0"))  # a replayed copy
    assert not apply_frame(state, frame("announcement", {"text": "  "}))


def test_unknown_and_malformed_frames_change_nothing(state: ConsoleState) -> None:
    assert not apply_frame(state, {"type": "future.thing", "payload": {"x": 1}})
    assert not apply_frame(state, {"type": "chat.aggregate", "payload": "not a dict"})
    assert not apply_frame(state, {"payload": {}})


def test_platform_filter_and_search() -> None:
    state = ConsoleState(session_id="s1")
    messages = [
        chat(1, "twitch", text="hello world"),
        chat(2, "youtube", username="maria", text="olá"),
        chat(3, "twitch", displayName="Night Owl", text="encore!"),
    ]
    apply_frame(state, frame("chat.aggregate", {"messages": messages}))
    assert [line.id for line in visible_lines(state.chat, "twitch", "")] == [
        "twitch:1",
        "twitch:3",
    ]
    assert [line.id for line in visible_lines(state.chat, None, "MARIA")] == ["youtube:2"]
    assert [line.id for line in visible_lines(state.chat, None, "owl")] == ["twitch:3"]
    assert not matches(state.chat[1], "twitch", "maria")
    assert next_platform(None) == "twitch"
    assert next_platform("audifi") is None


def test_poll_form_builds_the_contract_payload() -> None:
    payload = poll_payload("Encore?", "Yes\nNo\n\n", "60", allow_multiple=True)
    assert payload == {
        "question": "Encore?",
        "options": ["Yes", "No"],
        "duration": 60,
        "allowMultiple": True,
    }
    assert poll_payload("Q", "A | B | C", "", False)["options"] == ["A", "B", "C"]
    assert "duration" not in poll_payload("Q", "A;B", " ", False)


@pytest.mark.parametrize(
    ("question", "options", "duration", "reason"),
    [
        ("", "A\nB", "", "Question"),
        ("Q", "Only one", "", "Options"),
        ("Q", "A\na", "", "distinct"),
        ("Q", "A\nB", "2", "Duration"),
        ("Q", "A\nB", "soon", "whole seconds"),
    ],
)
def test_poll_form_refuses_with_a_reason(
    question: str, options: str, duration: str, reason: str
) -> None:
    with pytest.raises(PollFormError, match=reason):
        poll_payload(question, options, duration, False)


def test_role_choice_from_the_token() -> None:
    import jwt

    token = jwt.encode({"sub": "artist-1"}, "secret-of-at-least-32-bytes-length", "HS256")
    assert token_subject(token) == "artist-1"
    assert token_subject("not a jwt") is None
    assert roles_to_try({"artistId": "artist-1"}, "artist-1") == ["artist", "producer"]
    assert roles_to_try({"artistId": "artist-1"}, "someone") == ["producer"]


def test_plain_error_words() -> None:
    assert plain_error(4004, "poll.create needs artist or producer") == (
        "Not allowed: poll.create needs artist or producer"
    )
    assert plain_error(None, "boom", status=409) == "Conflict: boom"
    assert plain_error(None, None) == "The server refused that"
