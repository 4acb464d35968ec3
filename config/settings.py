"""Settings for every part, read from flags, ``VSTUDIO_*`` variables, a TOML file, then defaults.

Each part (broker, server, ingest) has one model. The TOML file has one table per part
(``[broker]``, ``[server]``, ``[ingest]``) and is named by ``--config`` or ``VSTUDIO_CONFIG``.
Every limit of the wire contract is a field here so tests can shrink it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "BrokerSettings",
    "IngestSettings",
    "PartSettings",
    "ServerSettings",
    "config_file_path",
    "default_data_dir",
    "load_settings",
    "setting_sources",
]

ENV_PREFIX = "VSTUDIO_"


def default_data_dir() -> Path:
    """Where the embedded Redis and generated secrets live, following XDG conventions."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vstudio"


def config_file_path() -> Path | None:
    """The TOML file named by ``VSTUDIO_CONFIG`` (the CLI's ``--config`` sets it)."""
    value = os.environ.get(f"{ENV_PREFIX}CONFIG")
    return Path(value).expanduser() if value else None


def read_config_table(section: str) -> dict[str, Any]:
    """One part's table of the TOML file, or ``{}`` when there is no file."""
    path = config_file_path()
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ValueError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise ValueError(f"config file {path}: [{section}] must be a table")
    return table


class _TomlTableSource(PydanticBaseSettingsSource):
    """Reads the part's table from the TOML file named by ``VSTUDIO_CONFIG``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        section = getattr(self.settings_cls, "section", "")
        return read_config_table(section)


class PartSettings(BaseSettings):
    """Shared behaviour: precedence flags > environment > TOML > defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    section: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlTableSource(settings_cls))


class BrokerSettings(PartSettings):
    """How to reach Redis, or where to run the embedded Valkey server."""

    section: ClassVar[str] = "broker"

    redis_url: str | None = Field(
        default=None,
        description="Redis/Valkey URL (redis+cluster://HOST:PORT names a Redis Cluster by any "
        "node); unset starts the embedded Valkey server",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="embedded server data and generated secrets"
    )
    embedded_port: int = Field(
        default=0, ge=0, le=65535, description="port of the embedded server; 0 picks a free one"
    )
    history_size: int = Field(
        default=10_000, ge=10, description="events kept per session stream for replay"
    )
    connect_attempts: int = Field(
        default=5, ge=1, description="tries before Redis is declared unreachable"
    )
    connect_timeout: float = Field(default=3.0, gt=0, description="seconds per connect attempt")
    resubscribe_max_backoff: float = Field(
        default=5.0, gt=0, description="cap of the wait between re-subscribe attempts, seconds"
    )
    dedupe_ttl: int = Field(
        default=3600, ge=1, description="seconds a chat message id is remembered for dedupe"
    )
    # issue 14: the dedupe memory of one session is bounded by count as well as by time
    dedupe_cap: int = Field(
        default=200_000,
        ge=2,
        description="most message ids one session remembers for dedupe (about 90 bytes each)",
    )
    # issue 15: the fleet whose keys this process reads and writes
    fleet: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="worker fleet name: fleets sharing one Redis never see each other's sources",
    )


class ServerSettings(PartSettings):
    """The realtime server: identity, limits of the wire protocol, fan-out."""

    section: ClassVar[str] = "server"

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="server processes sharing the port")
    public_url: str | None = Field(default=None, description="URL printed for people to open")
    certfile: Path | None = Field(
        default=None, description="PEM certificate (chain): serve HTTPS and WSS with keyfile"
    )
    keyfile: Path | None = Field(default=None, description="PEM private key of certfile")

    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret; the embedded default generates one"
    )
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwks_url: str | None = Field(default=None, description="JWKS URL for RS256 tokens")
    jwt_audience: str = "vstudio"
    jwt_issuer: str = "vstudio"
    token_ttl: int = Field(default=12 * 3600, ge=60, description="lifetime of login tokens, s")
    ticket_ttl: int = Field(default=30, ge=1, description="lifetime of a WebSocket ticket, s")
    guest_rate_limit: int = Field(default=10, ge=1, description="guest tokens per address/min")
    ticket_rate_limit: int = Field(default=60, ge=1, description="tickets per user per minute")
    max_sessions_per_artist: int = Field(
        default=20, ge=1, description="scheduled and live sessions one artist may have"
    )
    login_failures_per_user: int = Field(
        default=5, ge=1, description="failed logins per username per login_failure_window"
    )
    login_failures_per_address: int = Field(
        default=20, ge=1, description="failed logins per client address per login_failure_window"
    )
    login_failure_window: float = Field(default=300.0, gt=0, description="seconds")
    password_min_length: int = Field(default=10, ge=1, description="characters")
    metrics_token: SecretStr | None = Field(
        default=None, description="when set, /metrics needs 'Authorization: Bearer <it>'"
    )
    allow_weak_jwt_secret: bool = Field(
        default=False, description="accept a jwt_secret under 32 bytes (tests only)"
    )

    chat_rate_limit: int = Field(default=5, ge=1)
    chat_rate_window: float = Field(default=10.0, gt=0)
    reaction_rate_limit: int = Field(default=10, ge=1)
    reaction_rate_window: float = Field(default=10.0, gt=0)
    message_rate_limit: int = Field(default=50, ge=1, description="any client message")
    message_rate_window: float = Field(default=60.0, gt=0)
    max_message_bytes: int = Field(default=4096, ge=256)
    chat_max_length: int = Field(default=500, ge=1, description="characters per fan message")

    heartbeat_interval: float = Field(default=30.0, gt=0, description="ping every N s")
    heartbeat_timeout: float = Field(default=10.0, gt=0, description="pong expected within N s")
    heartbeat_max_missed: int = Field(default=2, ge=1)
    heartbeat_part: int = Field(
        default=250, ge=1, description="clients pinged at once; the parts spread over N/2 s"
    )

    max_viewers: int = Field(default=10_000, ge=1, description="per session, all processes")
    chat_coalesce_ms: int = Field(
        default=25, ge=1, description="one chat.aggregate per window at most (latency budget)"
    )
    reaction_window_ms: int = Field(default=250, ge=10)
    poll_results_per_second: float = Field(default=4.0, gt=0)
    gc_freeze: bool = Field(
        default=True, description="keep connections out of full GCs (see server/gcpolicy.py)"
    )
    fanout_chunk: int = Field(
        default=256, ge=1, description="WebSocket clients written to between event-loop yields"
    )
    send_buffer_limit: int = Field(
        default=1_048_576, ge=1024, description="bytes queued for a client before it is dropped"
    )
    sse_keepalive: float = Field(default=15.0, gt=0)
    allowed_reactions: list[str] = Field(
        default_factory=lambda: ["🔥", "❤️", "👏", "😂", "😮", "🎉", "💯", "🙌"]
    )
    tip_currencies: list[str] = Field(default_factory=lambda: ["USD", "EUR", "GBP", "JPY"])
    tip_max_amount: float = Field(default=10_000.0, gt=0)
    # issue 14: USD per unit of the ledger's pseudo-currencies; a currency without a rate is
    # shown as itself and never converted by a guess
    ledger_usd_rates: dict[str, float] = Field(
        default_factory=lambda: {"BITS": 0.01},
        description="USD per unit: BITS (Twitch pays creators 1 cent a bit), DIAMONDS (unset)",
    )

    # issue 16: the token gate (on-chain balances) and Sign-In with Ethereum
    eth_rpc_url: str | None = Field(
        default=None, description="Ethereum JSON-RPC URL of eth_chain_id (VSTUDIO_ETH_RPC_URL)"
    )
    eth_chain_id: int = Field(
        default=1, ge=1, description="chain of eth_rpc_url and of requirements naming none"
    )
    eth_rpc_urls: dict[int, str] = Field(
        default_factory=dict, description='more chains: JSON {"137": "https://..."}'
    )
    eth_rpc_timeout: float = Field(
        default=3.0, gt=0, description="seconds one balance lookup may take; then it fails closed"
    )
    token_balance_ttl: int = Field(
        default=15, ge=1, description="seconds a balance read on-chain is reused"
    )
    siwe_domain: str | None = Field(
        default=None, description="domain SIWE messages must name; default: public_url's host"
    )
    siwe_chain_ids: list[int] | None = Field(
        default=None, description="chains a wallet may sign in on; default: the RPC chains"
    )
    siwe_nonce_ttl: int = Field(default=300, ge=10, description="seconds a SIWE nonce is valid")

    def eth_rpc_endpoints(self) -> dict[int, str]:
        """Every configured Ethereum JSON-RPC URL by chain id."""
        urls = dict(self.eth_rpc_urls)
        if self.eth_rpc_url:
            urls.setdefault(self.eth_chain_id, self.eth_rpc_url)
        return urls

    # issue 13 (harden): Redis outages, connection caps, slow requests
    outage_retry_after: float = Field(
        default=2.0, gt=0, le=60, description="retryAfter, s, told while Redis is unreachable"
    )
    max_connections_per_user: int = Field(
        default=20, ge=0, description="open WebSocket/SSE connections of one user (0: no cap)"
    )
    max_connections_per_address: int = Field(
        default=1000, ge=0, description="open WebSocket/SSE connections from one address (0: off)"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="s for a request head to arrive; also the keep-alive idle"
    )
    body_timeout: float = Field(default=10.0, gt=0, description="s to read a request body")
    max_pending_connections_per_address: int = Field(
        default=256,
        ge=0,
        description="connections without a complete request, per address and process",
    )
    # issue 17 (votes2): fewer live tallies while a vote storm lasts
    poll_results_busy_ms: int = Field(
        default=1000, ge=0, description="while votes keep coming, a tally at most this late"
    )
    poll_results_quiet_ms: int = Field(
        default=100, ge=0, description="votes paused this long: the storm is over, tally now"
    )


class IngestSettings(PartSettings):
    """Ingestion workers: platform endpoints, credentials, batching, reconnection."""

    section: ClassVar[str] = "ingest"

    twitch_irc_url: str = "wss://irc-ws.chat.twitch.tv:443"
    twitch_token: SecretStr | None = None
    twitch_nick: str | None = None
    youtube_api_url: str = "https://www.googleapis.com/youtube/v3"
    youtube_api_key: SecretStr | None = None
    youtube_oauth_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str | None = None
    discord_token: SecretStr | None = None
    tiktok_sign_url: str | None = None

    batch_size: int = Field(default=200, ge=1, description="messages per publish")
    batch_interval_ms: int = Field(default=20, ge=1, description="longest wait to fill a batch")
    reconnect_attempts: int = Field(default=10, ge=1)
    reconnect_initial: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    heartbeat_ttl: int = Field(default=15, ge=2, description="seconds a worker record lives")
    # issue 14: TikTok like batches are summed into one event per window
    tiktok_like_window: float = Field(
        default=2.0, gt=0, le=60, description="seconds of TikTok likes summed into one event"
    )
    # issue 15: the worker fleet (leases, fair share, redundancy, the outage buffer)
    fleet_lease_ttl: float = Field(
        default=15.0, ge=1, description="seconds a worker's lease on a source lives unrenewed"
    )
    fleet_renew_interval: float = Field(
        default=5.0, gt=0, description="seconds between lease renewals (well under the TTL)"
    )
    fleet_reconcile_interval: float = Field(
        default=2.0, gt=0, description="seconds between a worker's looks at what is wanted"
    )
    fleet_capacity: int = Field(
        default=500, ge=1, description="most sources one worker process reads at once"
    )
    fleet_redundancy: int = Field(
        default=1, ge=1, le=3, description="workers reading each source at once (zero loss: 2)"
    )
    fleet_lead_seconds: int = Field(
        default=0, ge=0, description="start reading this long before a scheduled start"
    )
    fleet_buffer_limit: int = Field(
        default=10_000, ge=1, description="items a source keeps while Redis is unreachable"
    )
    fleet_credentials: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="named credential sets a source may name (default: this table's own), "
        "e.g. [ingest.fleet_credentials.second] twitch_token = ..., twitch_nick = ...",
    )
    # issue 14: Twitch never answers a JOIN to a channel that does not exist
    twitch_join_timeout: float = Field(
        default=5.0, gt=0, le=120, description="seconds to wait for a Twitch channel's ROOMSTATE"
    )
    # issue 15: one Twitch IRC connection joins many channels, paced by Twitch's JOIN limit
    twitch_join_limit: int = Field(default=20, ge=1, description="Twitch JOINs per window")
    twitch_join_window_seconds: float = Field(
        default=10.0, gt=0, description="the window of twitch_join_limit, in seconds"
    )
    twitch_channels_per_connection: int = Field(
        default=100, ge=1, le=1000, description="Twitch channels one IRC connection joins"
    )
    # issue 15: platform connections shared by every worker (docs/platform-connections.md)
    youtube_quota_per_day: int = Field(
        default=10_000, ge=1, description="YouTube Data API units per API key per Pacific day"
    )
    youtube_quota_recheck: float = Field(
        default=60.0, gt=0, description="s between looks at a spent YouTube quota"
    )
    tiktok_sign_per_minute: float = Field(
        default=10.0, gt=0, description="TikTok sign server requests per minute, all workers"
    )
    tiktok_sign_burst: int = Field(
        default=3, ge=1, description="TikTok sign server requests allowed at once after a lull"
    )


SettingsT = TypeVar("SettingsT", bound=PartSettings)


def load_settings(cls: type[SettingsT], **flags: Any) -> SettingsT:
    """Build ``cls`` with flags on top; flags that are ``None`` were not given."""
    given = {name: value for name, value in flags.items() if value is not None}
    return cls(**given)


def setting_sources(cls: type[PartSettings], **flags: Any) -> dict[str, str]:
    """Which source each field's effective value came from, for ``vstudio config show``."""
    table = read_config_table(cls.section)
    sources: dict[str, str] = {}
    for name in cls.model_fields:
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if flags.get(name) is not None:
            sources[name] = "flag"
        elif env_name in os.environ:
            sources[name] = f"env {env_name}"
        elif name in table:
            sources[name] = f"file [{cls.section}]"
        else:
            sources[name] = "default"
    return sources
