"""The status line and the status table render what the heartbeat records say."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from vstudio_cli.ingest.runner import print_status_table, status_line, status_table

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


LONG = {**RECORD, "workerId": "simulate-studio-pc-12345-abcdef", "session": "5e70d6e38489"}


def test_piped_the_table_is_as_wide_as_it_needs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    print_status_table([LONG], now=1_700_000_001_000)
    out = capsys.readouterr().out
    assert LONG["workerId"] in out and "5e70d6e38489" in out
    for column in ("host", "target", "published", "last msg", "reconnects"):
        assert column in out
    assert "…" not in out


def test_a_narrow_terminal_gets_the_compact_table_with_ids_whole(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat stdout as a terminal
    print_status_table([LONG], now=1_700_000_001_000)
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # the terminal's colours
    assert LONG["workerId"] in out and "5e70d6e38489" in out
    assert "published" not in out and "host" not in out
    assert max(len(line) for line in out.splitlines()) <= 70
