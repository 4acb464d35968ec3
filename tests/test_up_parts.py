"""The pieces of ``vstudio up`` that need no process: log lines for people, the LAN address,
the QR code, passwords kept off the banner."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import segno
from rich.console import Console

from vstudio_cli.lan import pick_lan_address, qr_text
from vstudio_cli.logfiles import last_problem, readable
from vstudio_cli.up_banner import panel, shown_redis


def test_a_json_log_line_reads_as_one_line_and_other_lines_pass() -> None:
    line = json.dumps(
        {
            "level": "warning",
            "event": "reconnect",
            "timestamp": "2026-12-02T18:16:45.007Z",
            "message": "cannot resolve irc-ws.chat.twitch.tv",
        }
    )
    assert readable(line) == "18:16:45 warning cannot resolve irc-ws.chat.twitch.tv"
    status = json.dumps({"event": "status", "state": "connected", "rate": 2.5, "received": 9})
    assert readable(status) == "status: connected, 2.5 msg/s, 9 received"
    assert readable("Traceback (most recent call last):") == "Traceback (most recent call last):"


def test_the_last_problem_is_the_last_warning_or_error(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    entries = [
        {"level": "error", "message": "old failure"},
        {"level": "warning", "message": "DNS lookup of\n irc-ws.chat.twitch.tv failed"},
        {"level": "info", "message": "stopped"},
    ]
    log.write_text("\n".join(json.dumps(e) for e in entries) + "\nplain text\n")
    assert last_problem(log) == "DNS lookup of irc-ws.chat.twitch.tv failed"
    assert last_problem(tmp_path / "missing.log") is None


def test_the_lan_address_is_private_and_never_loopback_or_link_local() -> None:
    assert pick_lan_address(["127.0.1.1", "169.254.3.4", "192.168.1.20"]) == "192.168.1.20"
    assert pick_lan_address(["203.0.113.9", "10.0.0.7"]) == "10.0.0.7"  # private first
    assert pick_lan_address(["8.8.4.4", None, "not-an-ip"]) == "8.8.4.4"
    assert pick_lan_address(["127.0.0.1", "0.0.0.0", "224.0.0.1"]) is None


def modules(text: str) -> list[list[bool]]:
    """The dark modules of a compact QR drawing (a character holds two rows)."""
    top = {"█": True, "▀": True, "▄": False, " ": False}
    bottom = {"█": True, "▄": True, "▀": False, " ": False}
    rows: list[list[bool]] = []
    for line in text.splitlines():
        rows.append([top[c] for c in line])
        rows.append([bottom[c] for c in line])
    return rows


def test_the_qr_code_encodes_the_url() -> None:
    url = "http://192.168.1.20:8080/s/abc123"
    drawn = modules(qr_text(url))
    expected = segno.make(url, error="m").matrix
    border = 2
    inner = [row[border : border + len(expected)] for row in drawn[border : border + len(expected)]]
    # the terminal draws dark modules as spaces on a light ground
    assert inner == [[not bool(v) for v in row] for row in expected]
    assert modules(qr_text(url + "x")) != drawn


def state(tmp_path: Path) -> dict:
    base = "http://127.0.0.1:8080"
    return {
        "url": base,
        "localUrl": base,
        "page": f"{base}/s/abc",
        "ws": f"{base.replace('http', 'ws')}/v1/vstudio/ws",
        "session": "abc",
        "overlays": {"chat": f"{base}/overlay/abc/chat"},
        "dataDir": str(tmp_path),
        "loginsFile": str(tmp_path / "demo-logins.json"),
        "users": ["artist", "producer", "viewer"],
    }


def rendered(renderable: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_the_banner_hides_passwords_unless_asked(tmp_path: Path) -> None:
    secret = {"artist": "s3cret-a", "producer": "s3cret-p", "viewer": "s3cret-v"}
    hidden = rendered(panel(state(tmp_path), None))
    assert "s3cret" not in hidden
    assert str(tmp_path / "demo-logins.json") in hidden and "--show-logins" in hidden
    shown = rendered(panel(state(tmp_path), secret))
    assert all(password in shown for password in secret.values())


def test_a_redis_password_never_reaches_the_screen() -> None:
    assert shown_redis("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert shown_redis("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


def test_follow_yields_appended_lines_whole_even_when_written_in_pieces(tmp_path: Path) -> None:
    from vstudio_cli.logfiles import follow

    log = tmp_path / "server.log"
    log.write_text("before\n")  # already there: not followed
    lines = follow({"server": log}, poll=0.01)
    with log.open("a") as file:
        file.write("first half ")
    rest = threading.Timer(0.2, lambda: log.open("a").write("and the rest\nsecond\n"))
    rest.start()  # after follow has read the first half on its own
    assert next(lines) == ("server", "first half and the rest")
    assert next(lines) == ("server", "second")


def test_the_worker_row_is_its_worst_reading_and_the_sum_of_their_rates() -> None:
    """``up``'s worker row: found by pid on this host, the worst state of what it reads (the
    reason of the first ill one), msg/s summed, every source listed."""
    import socket

    from broker.sources import SourceHealth, WorkerRecord
    from vstudio_cli.stack_status import PartStatus, fleet_part

    def record(worker_id: str, host: str) -> WorkerRecord:
        return WorkerRecord(
            id=worker_id, host=host, pid=42, capacity=500, load=2, started=0, seen=0
        )

    def health(source: str, state: str, rate: float, error: str = "") -> SourceHealth:
        return SourceHealth(
            source=source, owner="w1", state=state, sessions=["s"], msg_per_s=rate,
            last_error=error, seen=0,
        )  # fmt: skip

    here = socket.gethostname()
    workers = {"w1": record("w1", here), "w0": record("w0", "elsewhere")}
    ok = [health("simulate:3", "connected", 3.0), health("twitch:b", "connecting", 0.5)]
    part = PartStatus("worker", "starting", pid=42)
    fleet_part(part, (workers, ok))
    assert (part.state, part.rate) == ("connecting", 3.5)
    assert part.detail == "reading simulate:3, twitch:b"

    ill = [*ok, health("twitch:a", "failed", 0.0, "gave up")]
    part = PartStatus("worker", "starting", pid=42)
    fleet_part(part, (workers, ill))
    assert (part.state, part.detail) == ("failed", "twitch:a: gave up")
    assert [s["id"] for s in part.sources or []] == ["simulate:3", "twitch:a", "twitch:b"]

    part = PartStatus("worker", "starting", pid=42)
    fleet_part(part, ({"w1": record("w1", here)}, []))
    assert (part.state, part.detail) == ("up", "reading nothing yet")

    part = PartStatus("worker", "starting", pid=42)
    fleet_part(part, ({"w0": record("w0", "elsewhere")}, ok))  # same pid, another machine
    assert part.state == "starting" and part.sources is None
