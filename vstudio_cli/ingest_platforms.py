"""``vstudio ingest youtube|discord|tiktok``: registered onto the ``ingest`` command group.

Each command builds its adapter from flags on top of IngestSettings (flags > ``VSTUDIO_*``
environment > TOML ``[ingest]`` > defaults) and hands it to :func:`run_worker`, which owns Redis,
the status line, signals and exit codes. A bad flag or a missing credential exits 2 with what
to do.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import SecretStr

from vstudio_cli.ingest_cmd import (
    DurationOption,
    JsonOption,
    RedisUrlOption,
    SessionOption,
    app,
    ingest_settings,
    refuse,
    run_worker,
)

__all__ = ["discord", "tiktok", "youtube"]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


@app.command("youtube")
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
    from ingest.youtube import YouTubeAdapter

    settings = ingest_settings(
        youtube_api_url=api_url,
        youtube_api_key=api_key,
        youtube_oauth_token=oauth_token,
    )
    try:
        adapter = YouTubeAdapter(
            video_id=video,
            channel_id=channel,
            api_url=settings.youtube_api_url,
            api_key=_secret(settings.youtube_api_key),
            oauth_token=_secret(settings.youtube_oauth_token),
        )
    except ValueError as exc:
        refuse(exc)
    run_worker(
        adapter,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


@app.command("discord")
def discord(
    session: SessionOption,
    channel_id: Annotated[int, typer.Option("--channel-id", help="The text channel's id.")],
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
    """Read a Discord channel with a bot that has the Message Content intent."""
    from ingest.discord import DiscordAdapter

    settings = ingest_settings(
        discord_token=token, discord_api_url=api_url, discord_gateway_url=gateway_url
    )
    try:
        adapter = DiscordAdapter(
            channel_id=channel_id,
            token=_secret(settings.discord_token) or "",
            api_url=settings.discord_api_url,
            gateway_url=settings.discord_gateway_url,
            moderator_roles=moderator_role or (),
            subscriber_roles=subscriber_role or (),
        )
    except (ValueError, RuntimeError) as exc:
        refuse(exc)
    run_worker(
        adapter,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )


@app.command("tiktok")
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
    try:
        from ingest.tiktok import TikTokAdapter

        adapter = TikTokAdapter(
            user=user,
            sign_url=settings.tiktok_sign_url,
            sign_api_key=sign_api_key,
            app_url=app_url,
            webcast_url=webcast_url,
            room_id=room_id,
        )
    except (ValueError, RuntimeError) as exc:
        refuse(exc)
    run_worker(
        adapter,
        session,
        settings=settings,
        redis_url_flag=redis_url_flag,
        json_output=as_json,
        duration=duration,
    )
