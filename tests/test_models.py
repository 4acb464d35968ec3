"""The wire contract's models: what they accept and how they refuse the rest."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from broker.lifecycle import IllegalTransition, check_transition
from broker.models import (
    CLIENT_PAYLOADS,
    ChatMessageIn,
    Envelope,
    ErrorCode,
    MessageType,
    NormalizedChatMessage,
    PollCreate,
    PollVote,
    ProtocolError,
    Role,
    SessionJoin,
    SessionStatus,
    parse_client_frame,
)


def frame(type_: str, payload: object, **extra: object) -> bytes:
    return orjson.dumps({"type": type_, "payload": payload, "timestamp": 1, **extra})


def refused(raw: str | bytes, max_bytes: int = 4096) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(raw, max_bytes)
    return caught.value


def test_a_valid_vote_parses_with_its_request_id() -> None:
    parsed = parse_client_frame(
        frame("poll.vote", {"pollId": "p1", "optionIndex": 1}, requestId="r1")
    )
    assert parsed.type is MessageType.POLL_VOTE
    assert parsed.payload == PollVote(poll_id="p1", option_index=1)
    assert parsed.request_id == "r1"


SEED_VOTE = b"""{
  "type": "poll.vote",
  "payload": {
    "pollId": "poll_789",
    "optionIndex": 1
  },
  "timestamp": 1699123456789
}"""
"""The seed's "Vote on Poll" example, verbatim."""


def test_the_seeds_vote_example_parses() -> None:
    parsed = parse_client_frame(SEED_VOTE)
    assert parsed.payload == PollVote(poll_id="poll_789", option_index=1)
    assert parsed.payload.wire() == {"pollId": "poll_789", "optionIndex": 1}


def test_the_seeds_join_example_parses() -> None:
    seed_join = b"""{
  "type": "session.join",
  "payload": {
    "sessionId": "abc123",
    "role": "viewer",
    "userId": "user_456"
  },
  "timestamp": 1699123456789
}"""
    parsed = parse_client_frame(seed_join)
    assert parsed.payload == SessionJoin(session_id="abc123", role=Role.VIEWER, user_id="user_456")
    assert parse_client_frame(frame("session.join", {})).payload == SessionJoin()
    assert "role" in refused(frame("session.join", {"role": "admin"})).message


def test_chat_from_a_client_carries_only_text() -> None:
    parsed = parse_client_frame(frame("chat.message", {"text": "hello 🔥"}))
    assert parsed.payload == ChatMessageIn(text="hello 🔥")
    error = refused(frame("chat.message", {"text": "hi", "platform": "twitch"}))
    assert error.code == ErrorCode.INVALID_MESSAGE
    assert "platform" in error.message


def test_session_end_from_the_artist_is_empty() -> None:
    assert parse_client_frame(frame("session.end", {})).type is MessageType.SESSION_END


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (frame("poll.teleport", {}), "unknown or server-only message type 'poll.teleport'"),
        (frame("chat.aggregate", {"messages": []}), "server-only"),
        (b'{"payload": {}}', "type: Field required"),
        (frame("poll.vote", {"pollId": "p1"}), "optionIndex: Field required"),
        (frame("poll.vote", {"pollId": "p1", "optionIndex": 12}), "optionIndex"),
        (frame("poll.vote", {"pollId": "p1", "option": 1}), "optionIndex: Field required"),
        (frame("chat.message", {"text": "   "}), "blank"),
        (frame("chat.message", {"text": "x" * 2001}), "text"),
        (frame("tip.send", {"amount": -5, "currency": "USD"}), "amount"),
        (frame("tip.send", {"amount": 5, "currency": "usd"}), "currency"),
        (frame("poll.create", {"question": "q", "options": ["a"]}), "options"),
        (frame("poll.create", {"question": "q", "options": ["a", "A"]}), "distinct"),
        (frame("ping", {}, requestId=""), "requestId"),
    ],
)
def test_frames_the_contract_refuses_say_why(raw: bytes, reason: str) -> None:
    error = refused(raw)
    assert error.code == ErrorCode.INVALID_MESSAGE
    assert reason in error.message


def test_an_oversized_frame_is_refused_before_parsing() -> None:
    error = refused(b"{" + b" " * 5000, max_bytes=4096)
    assert error.code == ErrorCode.MESSAGE_TOO_LARGE
    assert "5001 bytes" in error.message and "4096" in error.message


def test_error_payload_carries_retry_after() -> None:
    error = ProtocolError(ErrorCode.RATE_LIMITED, "slow down", retry_after=1.23456)
    assert error.payload() == {"code": 4003, "message": "slow down", "retryAfter": 1.235}


def test_normalized_chat_is_camel_case_on_the_wire() -> None:
    message = NormalizedChatMessage(
        id="twitch:abc",
        platform="twitch",
        username="fan",
        display_name="Fan",
        text="Kappa hi",
        is_subscriber=True,
        timestamp=1700000000000,
        emotes=[{"name": "Kappa", "url": "https://x/1.png", "positions": [(0, 4)]}],
    )
    wire = message.wire()
    assert wire["displayName"] == "Fan" and wire["isSubscriber"] is True
    assert wire["emotes"][0]["positions"] == [[0, 4]]
    assert NormalizedChatMessage.model_validate(wire) == message


def test_normalized_chat_id_must_name_its_platform() -> None:
    with pytest.raises(ValueError, match="must start with 'youtube:'"):
        NormalizedChatMessage(
            id="twitch:abc", platform="youtube", username="u", text="t", timestamp=1
        )


def test_poll_create_defaults() -> None:
    poll = PollCreate.model_validate({"question": "Encore?", "options": ["Yes", "No"]})
    assert poll.duration is None and poll.allow_multiple is False


def test_session_lifecycle_moves_forward_only() -> None:
    check_transition(SessionStatus.SCHEDULED, SessionStatus.LIVE)
    check_transition(SessionStatus.LIVE, SessionStatus.ENDED)
    check_transition(SessionStatus.SCHEDULED, SessionStatus.ENDED)
    for current, target in [
        (SessionStatus.LIVE, SessionStatus.SCHEDULED),
        (SessionStatus.ENDED, SessionStatus.LIVE),
        (SessionStatus.LIVE, SessionStatus.LIVE),
    ]:
        with pytest.raises(IllegalTransition):
            check_transition(current, target)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("poll.vote", {"pollId": "p1", "optionIndex": True}),
        ("poll.vote", {"pollId": "p1", "optionIndex": "1"}),
        ("poll.vote", {"pollId": "p1", "optionIndex": 1.0}),
        ("tip.send", {"amount": True, "currency": "USD"}),
        ("tip.send", {"amount": "5", "currency": "USD"}),
        ("poll.create", {"question": "q?", "options": ["a", "b"], "duration": "60"}),
        ("poll.create", {"question": "q?", "options": ["a", "b"], "allowMultiple": 1}),
        ("chat.mute", {"userId": "u1", "muted": "yes"}),
        ("session.update", {"chatEnabled": 0}),
    ],
)
def test_client_numbers_and_flags_are_not_coerced(kind: str, payload: dict[str, object]) -> None:
    frame = orjson.dumps({"type": kind, "payload": payload, "timestamp": 1})
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(frame, 4096)
    assert caught.value.code == ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("poll.vote", {"pollId": "p1", "optionIndex": 1}),
        ("tip.send", {"amount": 5, "currency": "USD"}),
        ("tip.send", {"amount": 4.99, "currency": "USD"}),
        ("poll.create", {"question": "q?", "options": ["a", "b"], "duration": 60}),
    ],
)
def test_client_numbers_of_the_right_type_pass(kind: str, payload: dict[str, object]) -> None:
    frame = orjson.dumps({"type": kind, "payload": payload, "timestamp": 1})
    assert parse_client_frame(frame, 4096).type == kind


def _through_the_model(raw: bytes) -> tuple[object, object, object] | int:
    """What the envelope model alone makes of ``raw``: ``(type, payload, requestId)`` or 4006."""
    try:
        envelope = Envelope.model_validate(orjson.loads(raw))
    except ValidationError:
        return int(ErrorCode.INVALID_MESSAGE)
    return envelope.type, envelope.payload, envelope.request_id


VOTE_BODY = {"pollId": "p1", "optionIndex": 1}


@pytest.mark.parametrize(
    "envelope",
    [
        {"type": "poll.vote", "payload": VOTE_BODY},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": "r1", "timestamp": 5},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": None},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": "r" * 128},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": "r" * 129},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": ""},
        {"type": "poll.vote", "payload": VOTE_BODY, "requestId": 7},
        {"type": "poll.vote", "payload": VOTE_BODY, "request_id": "r1"},
        {"type": "poll.vote", "payload": VOTE_BODY, "timestamp": "5"},
        {"type": "poll.vote", "payload": VOTE_BODY, "timestamp": 1.5},
        {"type": "poll.vote", "payload": VOTE_BODY, "timestamp": None},
        {"type": "poll.vote", "payload": VOTE_BODY, "id": "e1"},
        {"type": "poll.vote", "payload": VOTE_BODY, "extra": 1},
        {"type": "poll.vote", "payload": [1]},
        {"type": "poll.vote", "payload": None},
        {"type": 5, "payload": VOTE_BODY},
        {"type": "ping"},
    ],
)
def test_the_plain_envelope_shortcut_agrees_with_the_envelope_model(
    envelope: dict[str, object],
) -> None:
    """Common envelopes skip the model (a vote storm parses thousands a second); whatever the
    shortcut takes, the model takes the same way, and the rest still meets the model."""
    raw = orjson.dumps(envelope)
    expected = _through_the_model(raw)
    try:
        parsed = parse_client_frame(raw)
    except ProtocolError as error:
        assert expected == error.code, (envelope, error)
        return
    assert not isinstance(expected, int), envelope
    kind, payload, request_id = expected
    assert (parsed.type, parsed.request_id) == (kind, request_id)
    model = CLIENT_PAYLOADS[MessageType(str(kind))]
    assert parsed.payload == model.model_validate(payload)
