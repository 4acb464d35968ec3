"""``vstudio ledger export`` against a real server: CSV and JSON of fans' tips and platform
money in one ledger, and exit codes that say what went wrong. The commands run in this process
(Typer's runner) to keep the test fast; the server is a real one."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from pathlib import Path

from typer.testing import CliRunner

from broker import Bus, connect
from broker.models import Platform, PlatformEvent
from ingest.batching import to_outgoing
from tests.support.live_server import LiveServer
from vstudio_cli.main import app


class Cli:
    def __init__(self, live_server: LiveServer, redis_url: str, home: Path) -> None:
        self.base_url = live_server.base_url
        self.env = {
            "XDG_CONFIG_HOME": str(home / "config"),
            "VSTUDIO_REDIS_URL": redis_url,
            "VSTUDIO_DATA_DIR": str(home / "data"),
            "VSTUDIO_SERVER": "",
            "VSTUDIO_TOKEN": "",
        }
        self.runner = CliRunner()

    def run(self, *args: str, code: int = 0) -> tuple[str, str]:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result.stdout, result.stderr

    def login(self, role: str) -> None:
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        self.run("user", "add", name, "--role", role, "--password", "s3cret-pw-long")
        self.run("login", name, "--password", "s3cret-pw-long", "--server", self.base_url)


async def publish(redis_url: str, session: str, *events: PlatformEvent) -> None:
    client = await connect(redis_url)
    try:
        bus = Bus(client)
        for event in events:
            await bus.publish_many(session, "events", [to_outgoing(event)[1]])
    finally:
        await client.aclose()


def test_export_csv_json_and_exit_codes(
    live_server: LiveServer, redis_url: str, tmp_path: Path
) -> None:
    cli = Cli(live_server, redis_url, tmp_path)
    cli.run("ledger", "export", "--session", "nope", code=3)  # not logged in
    cli.login("artist")
    cli.run("ledger", "export", "--session", "no-such-session", code=4)
    session = json.loads(cli.run("session", "create", "--title", "Books", "--json")[0])["id"]
    empty, said = cli.run("ledger", "export", "--session", session)
    assert empty == "time,platform,kind,id,username,amount,currency,amount_minor,message,user_id\n"
    assert "no entries yet" in said

    superchat = PlatformEvent(
        id="youtube:s1:superchat",
        platform=Platform.YOUTUBE,
        kind="superchat",
        username="Fan, with a comma",
        amount_minor=500,
        currency="USD",
        message='"love it"',
        timestamp=1_767_323_045_678,
    )
    cheer = PlatformEvent(
        id="twitch:c1:cheer",
        platform=Platform.TWITCH,
        kind="cheer",
        username="nightowl",
        amount_minor=300,
        currency="BITS",
        timestamp=1_767_323_046_000,
    )
    asyncio.run(publish(redis_url, session, superchat, cheer, cheer))  # the cheer twice

    text, _ = cli.run("ledger", "export", "--session", session)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["platform"], r["kind"], r["amount"], r["currency"]) for r in rows] == [
        ("youtube", "superchat", "5.00", "USD"),
        ("twitch", "cheer", "300", "BITS"),
    ]
    assert rows[0]["username"] == "Fan, with a comma" and rows[0]["message"] == '"love it"'
    assert rows[0]["time"] == "2026-01-02T03:04:05.678+00:00"

    out = tmp_path / "books.json"
    _, said = cli.run("ledger", "export", "--session", session, "--format", "json", "-o", str(out))
    assert "wrote 2 entries" in said
    document = json.loads(out.read_text())
    assert document["totals"] == {"twitch": {"BITS": 300.0}, "youtube": {"USD": 5.0}}
    assert [e["id"] for e in document["entries"]] == ["youtube:s1:superchat", "twitch:c1:cheer"]

    cli.login("viewer")  # not the artist: the books are not theirs
    cli.run("ledger", "export", "--session", session, code=7)
