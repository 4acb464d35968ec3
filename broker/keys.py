"""Every Redis key and channel name, in one place.

Every key of one session carries the hash tag ``{sessionId}`` so that a session's keys live in
one Redis Cluster slot and a Lua script may touch them together.
"""

from __future__ import annotations

__all__ = [
    "GLOBAL_ANNOUNCEMENTS",
    "LOGIN_FAILURES",
    "SEED_CHANNEL_PATTERN",
    "SESSION_CHANNEL_PATTERN",
    "WALLETS",
    "account_rate",
    "active_poll",
    "artist_live",
    "artist_sessions",
    "bridge_claim",
    "chat_channel",
    "dedupe",
    "dedupe_generation",
    "dedupe_generations",
    "events_channel",
    "fleet_health",
    "fleet_lease",
    "fleet_prefix",
    "fleet_sources",
    "fleet_twitch_joins",
    "fleet_worker_alive",
    "fleet_workers",
    "ingest_worker",
    "ingest_workers",
    "ledger_totals",
    "muted",
    "muted_names",
    "poll",
    "polls",
    "polls_channel",
    "presence",
    "reaction_window",
    "seed_channel",
    "session",
    "session_channels",
    "session_holders",
    "session_id_of_channel",
    "session_prefix",
    "sessions_index",
    "sign_bucket",
    "stream",
    "stream_deleted",
    "ticket",
    "ticket_rate",
    "tip_announced",
    "tip_ledger",
    "tip_requests",
    "tip_totals",
    "token_balance",
    "token_decimals",
    "user",
    "wallet_nonce",
    "wallet_nonce_rate",
    "wallet_of",
    "wallet_owner",
    "youtube_quota",
]

PREFIX = "vstudio"
GLOBAL_ANNOUNCEMENTS = f"{PREFIX}:global:announcements"
SESSION_CHANNEL_PATTERN = f"{PREFIX}:session:*"
SEED_CHANNEL_PATTERN = f"{PREFIX}:session:[^{{]*"
"""The seed's own channels, ``vstudio:session:<id>:chat`` without the hash tag: a glob that
leaves out ours (``vstudio:session:{<id>}:...``), so a bridge does not receive every event."""
SEED_KINDS = ("events", "chat", "polls")


def seed_channel(channel: str) -> tuple[str, str] | None:
    """``vstudio:session:abc:chat`` -> ``("abc", "chat")``; ``None`` for any other channel
    (ours with the hash tag included), or an id that cannot name a session."""
    start = f"{PREFIX}:session:"
    if not channel.startswith(start):
        return None
    session_id, _, kind = channel[len(start) :].rpartition(":")
    if kind not in SEED_KINDS or not session_id or any(c in session_id for c in "{}: \n"):
        return None
    return session_id, kind


def session_prefix(session_id: str) -> str:
    """``vstudio:session:{id}``: the common start of a session's keys and channels."""
    if not session_id or any(c in session_id for c in "{}: \n"):
        raise ValueError(f"invalid session id {session_id!r}")
    return f"{PREFIX}:session:{{{session_id}}}"


def events_channel(session_id: str) -> str:
    """Pub/sub channel of session lifecycle, presence, reactions, tips and moderation."""
    return f"{session_prefix(session_id)}:events"


def chat_channel(session_id: str) -> str:
    """Pub/sub channel of chat, fed by fans and by the ingestion workers."""
    return f"{session_prefix(session_id)}:chat"


def polls_channel(session_id: str) -> str:
    """Pub/sub channel of the poll lifecycle and results."""
    return f"{session_prefix(session_id)}:polls"


def session_channels(session_id: str) -> tuple[str, str, str]:
    """The three channels a server process subscribes to for one live session."""
    return events_channel(session_id), chat_channel(session_id), polls_channel(session_id)


def session_id_of_channel(channel: str) -> str:
    """Inverse of the channel builders: ``vstudio:session:{abc}:chat`` -> ``abc``."""
    start = channel.index("{") + 1
    return channel[start : channel.index("}", start)]


def stream(session_id: str) -> str:
    """Capped stream holding the session's event log; its ids are the event ids."""
    return f"{session_prefix(session_id)}:log"


def stream_deleted(session_id: str) -> str:
    """How many events were deleted from the stream on purpose (moderation), not trimmed."""
    return f"{session_prefix(session_id)}:log-deleted"


def session(session_id: str) -> str:
    """Hash with the session's record."""
    return f"{session_prefix(session_id)}:meta"


def dedupe(session_id: str, message_id: str) -> str:
    """Marker that a chat message id has been published to the session already (the dedupe
    before issue 14; nothing writes it now, it is named so old keys can be found)."""
    return f"{session_prefix(session_id)}:seen:{message_id}"


# --- issue 14: bounded dedupe and the cross-platform ledger ---


def dedupe_generation(session_id: str) -> str:
    """Hash of which dedupe generation is current (``cur``: a or b) and since when (``at``)."""
    return f"{session_prefix(session_id)}:seen"


def dedupe_generations(session_id: str) -> tuple[str, str]:
    """The two hashes of remembered message ids (digest -> stream id), current and previous
    by turns: a generation is dropped whole when its window or its share of the cap is used."""
    return f"{session_prefix(session_id)}:seen:a", f"{session_prefix(session_id)}:seen:b"


def muted_names(session_id: str) -> str:
    """Hash of muted id -> ``{platform, username}`` JSON: who a muted id is, for people."""
    return f"{session_prefix(session_id)}:muted:names"


def ledger_totals(session_id: str) -> str:
    """Hash of ``<platform>:<currency>`` -> total in minor units, fans' tips included."""
    return f"{session_prefix(session_id)}:ledger:totals"


def bridge_claim(session_id: str, digest: str) -> str:
    """One server process's claim on bridging a seed-format publish that has no id of its own."""
    return f"{session_prefix(session_id)}:bridged:{digest}"


def muted(session_id: str) -> str:
    """Set of user ids whose fan chat is muted in the session."""
    return f"{session_prefix(session_id)}:muted"


def poll(session_id: str, poll_id: str) -> str:
    """Hash with one poll; :func:`poll_voters` and :func:`poll_broadcast` hang off it."""
    return f"{session_prefix(session_id)}:poll:{poll_id}"


def poll_voters(session_id: str, poll_id: str) -> str:
    """Set of the users (or ``user:option`` pairs) that voted in the poll."""
    return f"{poll(session_id, poll_id)}:voters"


def poll_broadcast(session_id: str, poll_id: str) -> str:
    """The claim on the poll's next results broadcast (one process sends each)."""
    return f"{poll(session_id, poll_id)}:broadcast"


POLL_DEADLINES = f"{PREFIX}:polls:deadlines"
"""Sorted set ``sessionId/pollId`` scored by ``endsAt``: what the auto-end loops look at.

One key for every session (not hash-tagged): the loops read it across sessions."""


def active_poll(session_id: str) -> str:
    """The id of the session's one active poll."""
    return f"{session_prefix(session_id)}:poll:active"


def polls(session_id: str) -> str:
    """Every poll id of the session, in order."""
    return f"{session_prefix(session_id)}:polls"


def presence(session_id: str) -> tuple[str, str]:
    """Per-connection presence entries with expiry, and the distinct viewers they make."""
    prefix = session_prefix(session_id)
    return f"{prefix}:presence", f"{prefix}:viewers"


def reaction_window(session_id: str, window: int) -> str:
    """Hash of one reaction window's counts; :func:`reaction_window_done` marks it closed."""
    return f"{session_prefix(session_id)}:reactions:{window}"


def reaction_window_done(session_id: str, window: int) -> str:
    """Set once the window's counts were published, so it is published once."""
    return f"{reaction_window(session_id, window)}:done"


def guest_rate(address: str) -> str:
    """Sliding-window limit of the guest tokens one client address may get."""
    return f"{PREFIX}:guest:{address}"


def revoked_token(token_id: str) -> str:
    """Set while a logged-out token (by its ``jti``) would still be valid."""
    return f"{PREFIX}:revoked-token:{token_id}"


# issue 17: global keys that one command touches together share a hash tag (one cluster slot)
LOGIN_FAILURES = f"{PREFIX}:{{login-failures}}"
"""Common start of the failed-login windows: the login check takes the user's and the client
address's window in one script, so both carry the hash tag ``{login-failures}``."""


def login_failures_user(username: str) -> str:
    """Sliding window of failed logins for one username (counted whether it exists or not)."""
    return f"{LOGIN_FAILURES}:user:{username}"


def login_failures_address(address: str) -> str:
    """Sliding window of failed logins from one client address."""
    return f"{LOGIN_FAILURES}:address:{address}"


def account_rate(session_id: str, user_id: str) -> str:
    """Sliding-window rate limits of one user in the session, whatever carries the messages
    (REST calls, every WebSocket of the user): ``<this>:<limit name>``."""
    return f"{session_prefix(session_id)}:rate:{user_id}"


def ticket_rate(user_id: str) -> str:
    """Sliding window of the WebSocket tickets one user took."""
    return f"{PREFIX}:ticket-rate:{user_id}"


def tip_ledger(session_id: str) -> str:
    """Stream of every recorded tip: what settlement reconciles against."""
    return f"{session_prefix(session_id)}:tips"


def tip_requests(session_id: str) -> str:
    """Hash of (user, requestId) -> tip, for idempotency."""
    return f"{session_prefix(session_id)}:tips:requests"


def tip_announced(session_id: str) -> str:
    """Hash of (user, requestId) pairs whose tip.received went out."""
    return f"{session_prefix(session_id)}:tips:announced"


def tip_announce_claim(session_id: str, request_id: str) -> str:
    """One process's claim on announcing a recorded tip (expires if that process dies)."""
    return f"{tip_announced(session_id)}:claim:{request_id}"


def tip_totals(session_id: str) -> str:
    """Hash of currency -> total in minor units."""
    return f"{session_prefix(session_id)}:tips:totals"


def sessions_index() -> str:
    """Sorted set of every session id, scored by creation time."""
    return f"{PREFIX}:sessions"


def artist_sessions(artist_id: str) -> str:
    """Sorted set of the artist's session ids, scored by creation time."""
    return f"{PREFIX}:artist:{artist_id}:sessions"


def artist_live(artist_id: str) -> str:
    """The id of the artist's one live session, if any."""
    return f"{PREFIX}:artist:{artist_id}:live"


def user(username: str) -> str:
    """Hash with an account: password hash and roles."""
    return f"{PREFIX}:user:{username}"


def ticket(ticket_id: str) -> str:
    """A single-use WebSocket ticket."""
    return f"{PREFIX}:ticket:{ticket_id}"


def ingest_worker(worker_id: str) -> str:
    """Heartbeat record of one ingestion worker, expiring when it stops beating."""
    return f"{PREFIX}:ingest:worker:{worker_id}"


def ingest_workers() -> str:
    """Pattern matching every ingestion worker record."""
    return f"{PREFIX}:ingest:worker:*"


# --- issue 16: the token gate and wallet sign-in -----------------------------------------------


def token_balance(chain_id: int, contract: str, owner: str, token_id: int | None = None) -> str:
    """A cached ``balanceOf`` answer (lowercase addresses; the ERC-1155 id when there is one)."""
    suffix = "" if token_id is None else f":{token_id}"
    return f"{PREFIX}:token:{chain_id}:{contract.lower()}:balance:{owner.lower()}{suffix}"


def token_decimals(chain_id: int, contract: str) -> str:
    """A token's cached ``decimals()`` and standard (``erc20:6``, ``erc721:0``)."""
    return f"{PREFIX}:token:{chain_id}:{contract.lower()}:decimals"


def wallet_nonce(nonce: str) -> str:
    """A Sign-In with Ethereum nonce not used yet (deleted when it is)."""
    return f"{PREFIX}:wallet:nonce:{nonce}"


def wallet_nonce_rate(address: str) -> str:
    """Sliding window of the SIWE nonces one client address asked for."""
    return f"{PREFIX}:wallet:nonce-rate:{address}"


WALLETS = f"{PREFIX}:{{wallets}}"
"""Common start of the wallet links both ways: one script moves a link and drops the stale
ends (the account's old address, the address's old account), so all carry ``{wallets}``."""


def wallet_of(user_id: str) -> str:
    """The wallet address linked to an account."""
    return f"{WALLETS}:user:{user_id}"


def wallet_owner(address: str) -> str:
    """The account a wallet address is linked to (lowercase address)."""
    return f"{WALLETS}:address:{address.lower()}"


def session_holders(session_id: str) -> str:
    """Set of the users granted ``token_holder`` in the session (verified on-chain)."""
    return f"{session_prefix(session_id)}:holders"


# issue 13 (harden): connection caps per user and per address, across server processes
def user_connections(user_id: str) -> str:
    """Sorted set of one user's open connections (``<process>|<connection>``) by expiry."""
    return f"{PREFIX}:conns:user:{user_id}"


def address_connections(address: str) -> str:
    """Sorted set of the open connections from one client address, by expiry."""
    return f"{PREFIX}:conns:addr:{address}"


# --- issue 15: the worker fleet (every key of one fleet under its hash tag: one slot) ----------


def fleet_prefix(fleet: str) -> str:
    """``vstudio:{fleet:NAME}``: one fleet's keys. Several fleets (production, staging, each
    test) may share a Redis without seeing each other's sources or workers."""
    if not fleet or any(c in fleet for c in "{}: \n|"):
        raise ValueError(f"invalid fleet name {fleet!r}")
    return f"{PREFIX}:{{fleet:{fleet}}}"


def fleet_sources(fleet: str) -> str:
    """Hash of every session's declared sources: ``<session>|<source id>`` -> spec JSON."""
    return f"{fleet_prefix(fleet)}:sources"


def fleet_workers(fleet: str) -> str:
    """Hash of the fleet's workers: worker id -> its record JSON (host, pid, load, capacity)."""
    return f"{fleet_prefix(fleet)}:workers"


def fleet_worker_alive(fleet: str, worker_id: str) -> str:
    """A worker's liveness mark, expiring when the worker stops renewing it."""
    return f"{fleet_prefix(fleet)}:worker:{worker_id}:alive"


def fleet_lease(fleet: str, source_id: str, replica: int) -> str:
    """The lease on one reading of a source (``replica`` 0.. for redundancy)."""
    return f"{fleet_prefix(fleet)}:lease:{source_id}:{replica}"


def fleet_health(fleet: str) -> str:
    """Hash of how each reading goes: ``<source id>|<owner>`` -> health JSON."""
    return f"{fleet_prefix(fleet)}:health"


# issue 15: platform connections shared by every worker (YouTube quota, TikTok sign server)
def youtube_quota(key_fingerprint: str, day: str) -> str:
    """Units spent on one YouTube API key (by fingerprint, never the key) on one quota day
    (``YYYY-MM-DD`` in Pacific time); its own hash tag, one slot per key."""
    return f"{PREFIX}:{{ytquota:{key_fingerprint}}}:{day}"


def sign_bucket(key_fingerprint: str) -> str:
    """The token bucket of one TikTok sign server API key (by fingerprint), a hash of
    ``tokens`` and ``at`` (ms)."""
    return f"{PREFIX}:{{signbucket:{key_fingerprint}}}"


# issue 15: Twitch's JOIN limit is per account, so every worker of a fleet counts in one window
def fleet_twitch_joins(fleet: str, account: str) -> str:
    """Sorted set of the JOINs one Twitch account (its login, never a token) sent in the last
    window, by any worker of the fleet: member per JOIN, scored by Redis' time in ms."""
    if not account or any(c in account for c in "{}: \n"):
        raise ValueError(f"invalid Twitch account {account!r}")
    return f"{fleet_prefix(fleet)}:twitch-joins:{account}"


# issue 17 (storm2): tickets are signed; Redis keeps the signing key and the used tickets
def ticket_key() -> str:
    """The key every server process signs and checks WebSocket tickets with (random bytes,
    created by the first process that needs one)."""
    return f"{PREFIX}:ticket-key"
