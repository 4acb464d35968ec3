"""The status line and the status table render what the heartbeat records say."""

from __future__ import annotations

from rich.console import Console

from vstudio_cli.ingest.runner import status_line, status_table

RECORD = {
    "workerId": "twitch-host-1-abc",
    "host": "host",
    "platform": "twitch",
    "target": "#dallas",
    "session": "s1",
    "state": "reconnecting",
    "detail": "ws://127.0.0.1:1/",
    "rate": 1234.56,
    "received": 98765,
    "published": 98000,
    "duplicates": 765,
    "reconnects": 3,
    "lastMessageAt": 1_700_000_000_000,
}


def render(renderable: object) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_status_line_shows_rate_total_age_reconnects_and_state() -> None:
    text = render(status_line(RECORD, now=1_700_000_002_500))
    for part in ("reconnecting", "#dallas", "1234.6 msg/s", "total 98,765", "2.5 s ago"):
        assert part in text
    assert "reconnects 3" in text and "duplicates 765" in text
    fresh = render(status_line({**RECORD, "lastMessageAt": None}, now=0))
    assert "none yet" in fresh


def test_status_table_has_a_row_per_worker() -> None:
    second = {
        **RECORD,
        "workerId": "simulate-h-2-def",
        "platform": "simulate",
        "state": "connected",
    }
    text = render(status_table([RECORD, second], now=1_700_000_001_000))
    assert "ingestion workers (2)" in text
    assert "twitch-host-1-abc" in text and "simulate-h-2-def" in text
    assert "98,765" in text and "1.0 s" in text
