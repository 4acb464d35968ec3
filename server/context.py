"""The one context of a server process, built complete when the app starts.

Every request handler reaches it as ``request.app[CONTEXT]``: the settings, the Redis-backed
stores, the fan-out hub, the interaction services and the table of client messages, each a
typed attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from broker.bus import Bus
from broker.models import ErrorCode, ProtocolError, Role, Session, token_requirements
from config import BrokerSettings, ServerSettings
from server.attendance import Attendance
from server.fanout.hub import Hub
from server.identity.accounts import AccountStore
from server.identity.auth import Identity, TokenVerifier, bearer_token
from server.identity.tickets import TicketStore, grant_role, highest_role
from server.identity.wallet import WalletStore
from server.interactions.gating import record_holder
from server.interactions.registry import ActionTable
from server.interactions.services import Services
from server.interactions.sessions import SessionStore
from server.metrics import Metrics
from server.presence import ConnectionQuota, Presence
from server.ratelimit import RedisWindow
from server.tokengate.abi import Verdict
from server.tokengate.gate import TokenGate

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
    wallets: WalletStore
    gate: TokenGate

    async def identify(self, request: web.Request, *, token: str | None = None) -> Identity:
        """The caller's identity from ``Authorization: Bearer`` (or ``token``), else AuthError.

        Refusals are logged and counted by the HTTP error middleware, which sees them all.
        """
        if token:
            return await self.verifier.verify(token)
        return await self.identify_header(request.headers.get("Authorization"))

    async def identify_header(self, authorization: str | None) -> Identity:
        """:meth:`identify` from the ``Authorization`` header's value alone (the front's
        ticket route has no aiohttp request)."""
        return await self.verifier.verify(bearer_token(authorization))

    async def holder_verdict(self, session: Session, who: Identity) -> Verdict:
        """The token gate's check of ``who``'s linked wallet against the session's tokens.

        4005 when there is nothing to check: no wallet linked, or no tokens required."""
        if who.guest:
            raise ProtocolError(ErrorCode.TOKEN_GATE_FAILED, "guests have no wallet to check")
        required = token_requirements(session.required_tokens)
        if not required:
            raise ProtocolError(
                ErrorCode.TOKEN_GATE_FAILED,
                f"session {session.id} requires no tokens, so there is nothing to hold; "
                "connect as viewer",
            )
        address = await self.wallets.address_of(who.user_id)
        if address is None:
            raise ProtocolError(
                ErrorCode.TOKEN_GATE_FAILED,
                "no wallet is linked to your account: sign in with Ethereum first "
                "(POST /v1/auth/wallet/nonce, then /v1/auth/wallet/verify)",
            )
        return await self.gate.check(required, address)

    async def grant(self, session: Session, who: Identity, requested: Role | str | None) -> Role:
        """:func:`grant_role`, with the token gate asked when ``token_holder`` is requested."""
        holder = None
        if requested is not None and Role(requested) == Role.TOKEN_HOLDER and not who.guest:
            grant_role(session, who, Role.VIEWER)  # ended sessions and guests fail first
            holder = await self.holder_verdict(session, who)
        role = grant_role(session, who, requested, holder)
        if role == Role.TOKEN_HOLDER:
            await record_holder(self.bus, session.id, who.user_id)
        return role

    async def role_of(self, session: Session, who: Identity) -> Role:
        """The strongest role of a caller without a ticket (REST, SSE with a bearer token):
        :func:`highest_role`, or ``token_holder`` for a viewer whose linked wallet passes the
        token gate (a cached check; any failure leaves the caller a viewer)."""
        role = highest_role(session, who)
        if role != Role.VIEWER or who.guest or not session.required_tokens:
            return role
        try:
            verdict = await self.holder_verdict(session, who)
        except ProtocolError:
            return role
        if not verdict.passed:
            return role
        await record_holder(self.bus, session.id, who.user_id)
        return Role.TOKEN_HOLDER


CONTEXT = web.AppKey("context", ServerContext)
"""What every request handler of one server process shares."""
