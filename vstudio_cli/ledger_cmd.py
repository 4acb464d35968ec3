"""``vstudio ledger export``: the session's money, every platform's and the fans', for the books.

One row per ledger entry, oldest first: fans' tips (platform ``audifi``), Twitch cheers (in
BITS), YouTube Super Chats and Stickers, TikTok gifts (in DIAMONDS). Amounts are as received:
bits and diamonds are never converted here (``docs/platform-events.md`` says why and where the
USD rates are set). Only the session's artist and producers may read it.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.ledger import MINOR_UNITS
from vstudio_cli.client import VStudioClient
from vstudio_cli.remote import ServerOption, TokenOption, err_console, run_remote

__all__ = ["CSV_COLUMNS", "app", "to_csv"]

app = typer.Typer(
    help="The session's money ledger: tips, bits, Super Chats, TikTok gifts.",
    no_args_is_help=True,
)

CSV_COLUMNS = (
    "time",
    "platform",
    "kind",
    "id",
    "username",
    "amount",
    "currency",
    "amount_minor",
    "message",
    "user_id",
)
"""The CSV header, in order (``time`` is ISO 8601 UTC)."""


class Format(StrEnum):
    CSV = "csv"
    JSON = "json"


def _iso(ms: Any) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _amount(entry: dict[str, Any]) -> str:
    """The amount with the currency's own decimals (``5.00`` USD, ``300`` BITS, ``1000`` JPY)."""
    currency = str(entry.get("currency", ""))
    minor = entry.get("amountMinor")
    if not isinstance(minor, int):
        return str(entry.get("amount", ""))
    places = MINOR_UNITS.get(currency, 2)
    return f"{minor / 10**places:.{places}f}"


def to_csv(entries: list[dict[str, Any]]) -> str:
    """The entries as CSV with :data:`CSV_COLUMNS`, one row each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                _iso(entry.get("timestamp")),
                entry.get("platform", ""),
                entry.get("kind", ""),
                entry.get("id", ""),
                entry.get("username", ""),
                _amount(entry),
                entry.get("currency", ""),
                entry.get("amountMinor", ""),
                entry.get("message") or "",
                entry.get("userId") or "",
            ]
        )
    return out.getvalue()


@app.command("export")
def export(
    session: Annotated[str, typer.Option("--session", help="The session's id.")],
    format_: Annotated[
        Format, typer.Option("--format", help="csv (one row per entry) or json.")
    ] = Format.CSV,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Export the session's ledger, oldest entry first.

    Exit codes: 0 exported (an empty ledger exports a header and says so on stderr),
    3 not logged in, 4 no such session, 6 server unreachable, 7 not the artist or a producer.

    Example: vstudio ledger export --session abc123 --format csv -o books.csv
    """

    async def work(client: VStudioClient) -> dict[str, Any]:
        answer: dict[str, Any] = await client.call("GET", f"/v1/vstudio/sessions/{session}/tips")
        return answer

    answer = run_remote(server, token, work)
    entries: list[dict[str, Any]] = answer.get("tips") or []
    if format_ is Format.JSON:
        document = {
            "sessionId": session,
            "totals": answer.get("ledgerTotals") or {},
            "entries": entries,
        }
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    else:
        text = to_csv(entries)
    if output is not None:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
    if not entries:
        err_console.print(f"the ledger of session {session} has no entries yet")
    elif output is not None:
        err_console.print(f"wrote {len(entries)} entries to {output}")
