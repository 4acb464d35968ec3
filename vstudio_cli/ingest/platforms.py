"""``vstudio ingest twitch|youtube|discord|tiktok``: read one live platform's chat.

Each command builds its adapter from flags on top of IngestSettings (flags > ``VSTUDIO_*``
environment > TOML ``[ingest]`` > defaults) and hands the building to
:func:`~vstudio_cli.ingest.runner.run_worker`, which refuses a bad flag or a missing credential
(exit 2, with what to do) and owns Redis, the status line, signals and exit codes.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import SecretStr

from config import load_settings
from ingest.base import Adapter
from vstudio_cli.ingest.group import (
    DurationOption,
    JsonOption,
    RedisUrlOption,
    SessionOption,
    ingest_settings,
)
from vstudio_cli.ingest.runner import run_worker

__all__ = ["discord", "tiktok", "twitch", "youtube"]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def twitch(
    session: SessionOption,
    channel: Annotated[str, typer.Option("--channel", help="Twitch channel name.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="User access token (VSTUDIO_TWITCH_TOKEN): chat:read for IRC, "
            "user:read:chat for --eventsub. Without it IRC reads anonymously.",
        ),
    ] = None,
    nick: Annotated[
        str | None, typer.Option("--nick", help="IRC: the account the --token belongs to.")
    ] = None,
    irc_url: Annotated[
        str | None,
        typer.Option("--irc-url", help="IRC-over-WebSocket URL (VSTUDIO_TWITCH_IRC_URL)."),
    ] = None,
    join_timeout: Annotated[
        float | None,
        typer.Option(
            "--join-timeout",
            min=0.1,
            help="IRC: seconds the channel has to answer the JOIN (VSTUDIO_TWITCH_JOIN_TIMEOUT, "
            "default 5); no answer means it does not exist: exit 4.",
        ),
    ] = None,
    eventsub: Annotated[
        bool, typer.Option("--eventsub", help="EventSub WebSocket through twitchio, not IRC.")
    ] = False,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="EventSub: app id (VSTUDIO_TWITCH_CLIENT_ID).")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            "--client-secret", help="EventSub: app secret (VSTUDIO_TWITCH_CLIENT_SECRET)."
        ),
    ] = None,
    refresh_token: Annotated[
        str | None,
        typer.Option("--refresh-token", help="EventSub: refresh token of --token."),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="EventSub: Helix base URL.")
    ] = None,
    auth_url: Annotated[
        str | None, typer.Option("--auth-url", help="EventSub: OAuth base URL (id.twitch.tv).")
    ] = None,
    eventsub_url: Annotated[
        str | None, typer.Option("--eventsub-url", help="EventSub: WebSocket URL.")
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read a Twitch channel's chat over IRC-over-WebSocket (anonymous unless --token), or
    with --eventsub through twitchio's EventSub WebSocket (app credentials and a user token).

    A channel that does not answer the JOIN within --join-timeout seconds does not exist or is
    banned: the worker stops with exit 4, as for a session that does not exist."""
    settings = ingest_settings(
        twitch_token=token,
        twitch_nick=nick,
        twitch_irc_url=irc_url,
        twitch_join_timeout=join_timeout,
    )

    def build() -> Adapter:
        if eventsub:
            from ingest.twitch_eventsub import EventSubSettings, TwitchEventSub

            # A bad flag raises pydantic's ValidationError: a ValueError, so it is refused.
            es_settings = load_settings(
                EventSubSettings,
                twitch_client_id=client_id,
                twitch_client_secret=client_secret,
                twitch_refresh_token=refresh_token,
                twitch_api_url=api_url,
                twitch_auth_url=auth_url,
                twitch_eventsub_url=eventsub_url,
            )
            secret = settings.twitch_token.get_secret_value() if settings.twitch_token else ""
            return TwitchEventSub(channel, secret, es_settings)
        from ingest.twitch import TwitchChat

        return TwitchChat(channel, settings)

    run_worker(
        build,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


def youtube(
    session: SessionOption,
    video: Annotated[
        str | None, typer.Option("--video", help="The live video: its id or URL.")
    ] = None,
    channel: Annotated[
        str | None,
        typer.Option("--channel", help="Channel id (UC...) or @handle: its live broadcast."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="YouTube Data API v3 key (VSTUDIO_YOUTUBE_API_KEY)."),
    ] = None,
    oauth_token: Annotated[
        str | None,
        typer.Option(
            "--oauth-token", help="OAuth access token instead (VSTUDIO_YOUTUBE_OAUTH_TOKEN)."
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="Data API base URL (VSTUDIO_YOUTUBE_API_URL)."),
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read a YouTube live chat through the Data API v3 (an API key or OAuth token needed)."""
    settings = ingest_settings(
        youtube_api_url=api_url,
        youtube_api_key=api_key,
        youtube_oauth_token=oauth_token,
    )

    def build() -> Adapter:
        from ingest.quota import QuotaLedger
        from ingest.youtube import YouTubeAdapter

        return YouTubeAdapter(
            video_id=video,
            channel_id=channel,
            api_url=settings.youtube_api_url,
            api_key=_secret(settings.youtube_api_key),
            oauth_token=_secret(settings.youtube_oauth_token),
            # issue 15: the key's daily quota, counted in the worker's Redis with every other
            quota=QuotaLedger(
                per_day=settings.youtube_quota_per_day, recheck=settings.youtube_quota_recheck
            ),
        )

    run_worker(
        build,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


def discord(
    session: SessionOption,
    channel_ids: Annotated[
        list[int],
        typer.Option(
            "--channel-id",
            "--channel",
            help="A text channel's id; repeat it to read several over one gateway connection.",
        ),
    ],
    token: Annotated[
        str | None, typer.Option("--token", help="Bot token (VSTUDIO_DISCORD_TOKEN).")
    ] = None,
    moderator_role: Annotated[
        list[str] | None,
        typer.Option("--moderator-role", help="Role name that marks moderators (repeatable)."),
    ] = None,
    subscriber_role: Annotated[
        list[str] | None,
        typer.Option("--subscriber-role", help="Role name that marks subscribers (repeatable)."),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="REST base URL (VSTUDIO_DISCORD_API_URL).")
    ] = None,
    gateway_url: Annotated[
        str | None,
        typer.Option("--gateway-url", help="Gateway URL (VSTUDIO_DISCORD_GATEWAY_URL)."),
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read Discord channels with a bot that has the Message Content intent.

    Several --channel-id values share one gateway connection (one IDENTIFY), each channel
    publishing to the session as a worker of its own; a channel the bot cannot see stops
    alone, and the command exits when every channel has stopped."""
    settings = ingest_settings(
        discord_token=token, discord_api_url=api_url, discord_gateway_url=gateway_url
    )

    def build() -> list[Adapter]:
        from ingest.discord import DiscordGateway

        gateway = DiscordGateway(
            token=_secret(settings.discord_token) or "",
            api_url=settings.discord_api_url,
            gateway_url=settings.discord_gateway_url,
        )
        return [
            gateway.adapter(
                channel_id,
                moderator_roles=moderator_role or (),
                subscriber_roles=subscriber_role or (),
            )
            for channel_id in dict.fromkeys(channel_ids)  # once each, in the order given
        ]

    run_worker(
        build,
        session,
        refused=(ValueError, RuntimeError),  # RuntimeError: discord.py is not installed
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


def tiktok(
    session: SessionOption,
    user: Annotated[str, typer.Option("--user", help="The LIVE host, as @name.")],
    sign_url: Annotated[
        str | None,
        typer.Option("--sign-url", help="Sign server base URL (VSTUDIO_TIKTOK_SIGN_URL)."),
    ] = None,
    sign_api_key: Annotated[
        str | None,
        typer.Option("--sign-api-key", envvar="SIGN_API_KEY", help="Sign server API key."),
    ] = None,
    room_id: Annotated[
        int | None,
        typer.Option("--room-id", help="The LIVE's room id: skips reading the user's page."),
    ] = None,
    app_url: Annotated[
        str | None, typer.Option("--app-url", help="TikTok site URL (tests and proxies).")
    ] = None,
    webcast_url: Annotated[
        str | None, typer.Option("--webcast-url", help="Webcast API URL (tests and proxies).")
    ] = None,
    duration: DurationOption = None,
    redis_url_flag: RedisUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read a TikTok LIVE through TikTokLive (needs the optional tiktok extra)."""
    settings = ingest_settings(tiktok_sign_url=sign_url)

    def build() -> Adapter:
        from ingest.signbucket import SignBucket
        from ingest.tiktok import TikTokAdapter

        return TikTokAdapter(
            user=user,
            sign_url=settings.tiktok_sign_url,
            sign_api_key=sign_api_key,
            app_url=app_url,
            webcast_url=webcast_url,
            room_id=room_id,
            like_window=settings.tiktok_like_window,
            # issue 15: one sign server budget for every worker, in the worker's Redis
            sign_bucket=SignBucket(
                per_minute=settings.tiktok_sign_per_minute, burst=settings.tiktok_sign_burst
            ),
        )

    run_worker(
        build,
        session,
        refused=(ValueError, RuntimeError),  # RuntimeError: TikTokLive is not installed
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )
