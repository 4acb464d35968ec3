"""The poll form's fields turned into a ``poll.create`` payload, validated by the contract.

The same pydantic model the server validates with checks the form, so the producer reads the
reason in the form before anything is sent.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from broker.models import PollCreate

__all__ = ["PollFormError", "poll_payload"]


class PollFormError(ValueError):
    """A form field that the contract would refuse, with the reason in words."""


def _options(text: str) -> list[str]:
    """One option per line, or separated by ``|`` or ``;`` on one line."""
    if "\n" not in text.strip():
        for separator in ("|", ";"):
            if separator in text:
                return [part.strip() for part in text.split(separator) if part.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def poll_payload(
    question: str, options_text: str, duration_text: str, allow_multiple: bool
) -> dict[str, Any]:
    """The wire payload of ``poll.create``, or :class:`PollFormError` saying what to fix."""
    duration: int | None = None
    if duration_text.strip():
        try:
            duration = int(duration_text.strip().removesuffix("s"))
        except ValueError as exc:
            raise PollFormError("Duration must be whole seconds (or empty: open-ended)") from exc
    options = _options(options_text)
    if not 2 <= len(options) <= 10:
        raise PollFormError(f"Options: give 2 to 10, one per line (there are {len(options)})")
    try:
        poll = PollCreate(
            question=question.strip(),
            options=options,
            duration=duration,
            allow_multiple=allow_multiple,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "poll"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise PollFormError(f"{where.capitalize()}: {reason}") from exc
    return poll.wire()
