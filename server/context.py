"""The one context of a server process, built complete when the app starts.

Every request handler reaches it as ``request.app[CONTEXT]``: the settings, the Redis-backed
stores, the fan-out hub, the interaction services and the table of client messages, each a
typed attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from broker.bus import Bus
from config import BrokerSettings, ServerSettings
from server.attendance import Attendance
from server.fanout.hub import Hub
from server.identity.accounts import AccountStore
from server.identity.auth import Identity, TokenVerifier, bearer_token
from server.identity.tickets import TicketStore
from server.interactions.registry import ActionTable
from server.interactions.services import Services
from server.interactions.sessions import SessionStore
from server.metrics import Metrics
from server.presence import ConnectionQuota, Presence
from server.ratelimit import RedisWindow

__all__ = ["CONTEXT", "ServerContext"]


@dataclass(frozen=True, slots=True)
class ServerContext:
    """Everything a request handler of this process needs."""

    settings: ServerSettings
    broker: BrokerSettings
    process_id: str
    bus: Bus
    sessions: SessionStore
    accounts: AccountStore
    tickets: TicketStore
    verifier: TokenVerifier
    presence: Presence
    quota: ConnectionQuota
    windows: RedisWindow
    metrics: Metrics
    services: Services
    actions: ActionTable
    hub: Hub
    attendance: Attendance

    async def identify(self, request: web.Request, *, token: str | None = None) -> Identity:
        """The caller's identity from ``Authorization: Bearer`` (or ``token``), else AuthError.

        Refusals are logged and counted by the HTTP error middleware, which sees them all.
        """
        return await self.verifier.verify(
            token or bearer_token(request.headers.get("Authorization"))
        )


CONTEXT = web.AppKey("context", ServerContext)
"""What every request handler of one server process shares."""
