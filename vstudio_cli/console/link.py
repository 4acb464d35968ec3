"""The console's line to one session: the REST client plus a live WebSocket as staff.

It picks the role (``artist`` when the token's user owns the session, else ``producer``),
opens the reconnecting :class:`~vstudio_cli.client.LiveConnection`, and turns the producer's
commands into the contract's messages. Lifecycle changes (start, end) go over REST because
they must work when no live connection can exist (a scheduled or just-ended session).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jwt

from vstudio_cli.client import ApiError, LiveConnection, VStudioClient

__all__ = ["SessionLink", "roles_to_try", "token_subject"]


def token_subject(token: str | None) -> str | None:
    """The ``sub`` of a JWT, read without verifying it (the server verifies; we only choose)."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return str(subject) if subject is not None else None


def roles_to_try(session: dict[str, Any], subject: str | None) -> list[str]:
    """Artist first when the token's user owns the session, then producer."""
    if subject is not None and session.get("artistId") == subject:
        return ["artist", "producer"]
    return ["producer"]


class SessionLink:
    """Everything the console does with the server for one session."""

    def __init__(
        self, client: VStudioClient, session_id: str, *, live_options: dict[str, Any] | None = None
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.live_options = live_options or {}
        self.session: dict[str, Any] = {}
        self.role: str | None = None
        self.live: LiveConnection | None = None

    async def open(self) -> dict[str, Any]:
        """Read the session and connect as the highest role the user holds; the session."""
        self.session = await self.client.get_session(self.session_id)
        refused: ApiError | None = None
        for role in roles_to_try(self.session, token_subject(self.client.token)):
            live = self.client.live(self.session_id, role, **self.live_options)
            try:
                await live.__aenter__()
            except ApiError as exc:
                await live.close()
                refused = exc
                continue
            self.live, self.role = live, role
            return self.session
        assert refused is not None
        raise refused

    async def close(self) -> None:
        if self.live is not None:
            await self.live.close()

    def frames(self) -> AsyncIterator[dict[str, Any]]:
        assert self.live is not None, "open() first"
        return aiter(self.live)

    @property
    def closed_reason(self) -> str | None:
        return self.live.closed_reason if self.live is not None else None

    async def _request(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.live is None:
            raise ApiError(0, None, "not connected")
        return await self.live.request(kind, payload)

    async def create_poll(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._request("poll.create", payload)

    async def end_poll(self, poll_id: str) -> dict[str, Any]:
        return await self._request("poll.end", {"pollId": poll_id})

    async def delete_message(self, message_id: str) -> dict[str, Any]:
        return await self._request("chat.delete", {"messageId": message_id})

    async def mute(
        self, user_id: str, muted: bool, platform: str | None = None, username: str | None = None
    ) -> dict[str, Any]:
        """Mute a fan (by user id) or a platform user (``twitch:4242``, with platform and name
        so everyone sees who it is)."""
        payload: dict[str, Any] = {"userId": user_id, "muted": muted}
        if platform:
            payload |= {"platform": platform, "username": username}
        return await self._request("chat.mute", payload)

    async def update_session(self, **fields: Any) -> dict[str, Any]:
        return await self._request("session.update", fields)

    async def sources(self) -> list[dict[str, Any]]:
        """The session's chat sources, each with its owners and state (staff only)."""
        answer = await self.client.call(
            "GET", f"/v1/vstudio/sessions/{self.session_id}/sources", params={"health": "1"}
        )
        rows: list[dict[str, Any]] = answer["sources"]
        return rows

    async def start_session(self) -> dict[str, Any]:
        return await self.client.start_session(self.session_id)

    async def end_session(self) -> dict[str, Any]:
        return await self.client.end_session(self.session_id)
