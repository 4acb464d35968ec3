"""Building an adapter from a source spec: one plain mapping, source kind -> factory.

A factory takes the spec and the IngestSettings with the spec's named credentials already
applied, and returns an :class:`~ingest.base.Adapter`. :data:`ADAPTERS` opens one connection
per source; :class:`SharedConnections` replaces the Twitch and Discord entries with adapters on
shared connections (one Twitch IRC pool per credential set, one Discord gateway per bot token),
which is what a fleet worker runs by default. YouTube and TikTok adapters count their shared
budgets (the API key's daily quota, the sign server's rate) in the worker's Redis. A
``simulate`` source needs no platform: it is made-up demo chat at the target's rate.

Credentials never travel through Redis: a spec names a set, ``default`` being the ``[ingest]``
table's own tokens, any other a table under ``[ingest.fleet_credentials.NAME]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from broker.sources import SourceKind, SourceSpec
from config import IngestSettings
from ingest.base import Adapter, AdapterFatal

if TYPE_CHECKING:
    from ingest.discord import GatewayPool
    from ingest.twitch_pool import TwitchPool

__all__ = [
    "ADAPTERS",
    "CREDENTIAL_FIELDS",
    "AdapterFactory",
    "SharedConnections",
    "build_adapter",
    "credentials_for",
]

AdapterFactory = Callable[[SourceSpec, IngestSettings], Adapter]

CREDENTIAL_FIELDS: dict[str, bool] = {
    "twitch_token": True,
    "twitch_nick": False,
    "youtube_api_key": True,
    "youtube_oauth_token": True,
    "discord_token": True,
    "tiktok_sign_url": False,
}
"""The IngestSettings fields a named credential set may give, and whether each is secret."""


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def credentials_for(spec: SourceSpec, settings: IngestSettings) -> IngestSettings:
    """``settings`` with the spec's named credential set applied (``default``: unchanged)."""
    if spec.credentials == "default":
        return settings
    named = settings.fleet_credentials.get(spec.credentials)
    if named is None:
        known = ", ".join(sorted(settings.fleet_credentials)) or "none"
        raise AdapterFatal(
            f"{spec.id}: no credentials named {spec.credentials!r} in this worker's "
            f"[ingest.fleet_credentials] (known: {known})"
        )
    unknown = sorted(set(named) - set(CREDENTIAL_FIELDS))
    if unknown:
        raise AdapterFatal(
            f"credentials {spec.credentials!r}: unknown fields {', '.join(unknown)} "
            f"(allowed: {', '.join(CREDENTIAL_FIELDS)})"
        )
    update = {
        name: SecretStr(value) if CREDENTIAL_FIELDS[name] else value
        for name, value in named.items()
    }
    return settings.model_copy(update=update)


def _twitch(spec: SourceSpec, settings: IngestSettings) -> Adapter:
    from ingest.twitch import TwitchChat

    return TwitchChat(spec.target, settings)


def _youtube(spec: SourceSpec, settings: IngestSettings) -> Adapter:
    from ingest.quota import QuotaLedger
    from ingest.youtube import YouTubeAdapter

    video = spec.target if len(spec.target) == 11 and not spec.target.startswith("@") else None
    return YouTubeAdapter(
        video_id=video,
        channel_id=None if video else spec.target,
        api_url=settings.youtube_api_url,
        api_key=_secret(settings.youtube_api_key),
        oauth_token=_secret(settings.youtube_oauth_token),
        quota=QuotaLedger(
            per_day=settings.youtube_quota_per_day, recheck=settings.youtube_quota_recheck
        ),
    )


def _tiktok(spec: SourceSpec, settings: IngestSettings) -> Adapter:
    from ingest.signbucket import SignBucket
    from ingest.tiktok import TikTokAdapter

    return TikTokAdapter(
        user=spec.target,
        sign_url=settings.tiktok_sign_url,
        like_window=settings.tiktok_like_window,
        sign_bucket=SignBucket(
            per_minute=settings.tiktok_sign_per_minute, burst=settings.tiktok_sign_burst
        ),
    )


def _discord(spec: SourceSpec, settings: IngestSettings) -> Adapter:
    from ingest.discord import DiscordAdapter

    return DiscordAdapter(
        channel_id=int(spec.target),
        token=_secret(settings.discord_token) or "",
        api_url=settings.discord_api_url,
        gateway_url=settings.discord_gateway_url,
    )


def _simulate(spec: SourceSpec, settings: IngestSettings) -> Adapter:
    """Made-up demo chat at the target's rate (``vstudio up``'s demo source)."""
    from ingest.simulate import SimulatedChat

    return SimulatedChat(float(spec.target))


ADAPTERS: Mapping[SourceKind, AdapterFactory] = {
    SourceKind.TWITCH: _twitch,
    SourceKind.YOUTUBE: _youtube,
    SourceKind.TIKTOK: _tiktok,
    SourceKind.DISCORD: _discord,
    SourceKind.SIMULATE: _simulate,
}
"""The one-connection-per-source factories every worker starts with."""


class SharedConnections:
    """The platform connections one worker's readings share, made on first use.

    With ``redis``, each Twitch pool counts its JOINs in its account's window of ``fleet``,
    shared with every other worker of the fleet (Twitch's limit is per account).
    """

    def __init__(self, redis: Any = None, fleet: str = "default") -> None:
        self.redis = redis
        self.fleet = fleet
        self.twitch: dict[str, TwitchPool] = {}
        """One IRC pool per credential set (a pool logs in as one account)."""
        self.discord: GatewayPool | None = None

    def twitch_adapter(self, spec: SourceSpec, settings: IngestSettings) -> Adapter:
        from ingest.twitch_pool import TwitchPool

        pool = self.twitch.get(spec.credentials)
        if pool is None:
            pool = TwitchPool(settings, redis=self.redis, fleet=self.fleet)
            self.twitch[spec.credentials] = pool
        return pool.adapter(spec.target)

    def discord_adapter(self, spec: SourceSpec, settings: IngestSettings) -> Adapter:
        from ingest.discord import GatewayPool

        if self.discord is None:
            self.discord = GatewayPool(
                api_url=settings.discord_api_url, gateway_url=settings.discord_gateway_url
            )
        return self.discord.adapter(_secret(settings.discord_token) or "", int(spec.target))

    def factories(self) -> Mapping[SourceKind, AdapterFactory]:
        """:data:`ADAPTERS` with Twitch and Discord on the shared connections."""
        return {
            **ADAPTERS,
            SourceKind.TWITCH: self.twitch_adapter,
            SourceKind.DISCORD: self.discord_adapter,
        }

    async def aclose(self) -> None:
        """Close the Twitch connections (Discord gateways close with their last channel)."""
        for pool in self.twitch.values():
            await pool.aclose()


def build_adapter(
    spec: SourceSpec,
    settings: IngestSettings,
    factories: Mapping[SourceKind, AdapterFactory] = ADAPTERS,
) -> Adapter:
    """The adapter for ``spec``; :class:`~ingest.base.AdapterFatal` when it cannot be built
    (unknown credentials, a missing optional dependency, a bad credential combination)."""
    factory = factories.get(spec.platform)
    if factory is None:
        raise AdapterFatal(f"{spec.id}: this worker reads no {spec.platform} sources")
    try:
        return factory(spec, credentials_for(spec, settings))
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, AdapterFatal):
            raise
        raise AdapterFatal(f"{spec.id}: {exc}") from exc
