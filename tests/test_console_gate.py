"""The producer console shows gated polls and the session's holder count (issue 16)."""

from __future__ import annotations

from typing import Any

from vstudio_cli.console.model import ConsoleState
from vstudio_cli.console.reducer import apply_frame
from vstudio_cli.console.widgets.poll import poll_text
from vstudio_cli.console.widgets.status import status_text


def frame(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "payload": payload, "timestamp": 1}


POLL = {"id": "p1", "question": "Encore?", "options": ["yes", "no"], "results": [0, 0]}


def test_a_gated_poll_is_marked_and_a_public_one_is_not() -> None:
    state = ConsoleState("s1")
    apply_frame(state, frame("poll.create", {**POLL, "gated": True}))
    assert state.poll is not None and state.poll.gated
    assert "holders only" in poll_text(state.poll, 0).plain
    apply_frame(state, frame("poll.create", {**POLL, "id": "p2"}))
    assert state.poll is not None and not state.poll.gated
    assert "holders only" not in poll_text(state.poll, 0).plain


def test_holder_count_from_state_and_updates() -> None:
    state = ConsoleState("s1")
    apply_frame(state, frame("session.state", {"sessionId": "s1", "status": "live"}))
    assert state.holder_count is None and "holders" not in status_text(state).plain
    apply_frame(state, frame("session.state", {"sessionId": "s1", "holderCount": 2}))
    assert "🔑 2 holders" in status_text(state).plain
    apply_frame(state, frame("session.update", {"holderCount": 3}))
    assert state.holder_count == 3 and "🔑 3 holders" in status_text(state).plain
