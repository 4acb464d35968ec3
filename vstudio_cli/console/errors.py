"""Server errors in the plain words a producer reads in a notification."""

from __future__ import annotations

__all__ = ["plain_error"]

HEADLINES = {
    4000: "The console's ticket was refused",
    4001: "This session does not exist",
    4002: "This session has ended",
    4003: "Slow down",
    4004: "Not allowed",
    4005: "Token gate failed",
    4006: "The server did not accept that",
    4007: "That was too large",
    4008: "The session is full",
    401: "Your login is not valid any more (run 'vstudio login')",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
}


def plain_error(
    code: int | None, message: str | None, retry_after: float | None = None, status: int = 0
) -> str:
    """One sentence for a notification: what went wrong, the server's reason, when to retry."""
    headline = HEADLINES.get(code or 0) or HEADLINES.get(status) or "The server refused that"
    text = headline
    reason = (message or "").strip()
    if reason and reason.casefold() != headline.casefold():
        text += f": {reason}"
    if retry_after:
        text += f" (try again in {retry_after:g} s)"
    return text
