"""How each platform looks in the console: a colour and a two-letter badge."""

from __future__ import annotations

from rich.text import Text

from vstudio_cli.console.model import ChatLine

__all__ = ["PLATFORM_NAMES", "PLATFORM_STYLE", "badge", "name_text", "platform_label"]

PLATFORM_STYLE: dict[str, tuple[str, str]] = {
    "twitch": ("TW", "#9146ff"),
    "youtube": ("YT", "#ff3030"),
    "tiktok": ("TT", "#25f4ee"),
    "discord": ("DC", "#5865f2"),
    "audifi": ("VS", "#f5a623"),
}
"""Platform -> (badge, colour), after each platform's brand colour. Fans' own chat (platform
``audifi`` on the wire) is "V Studio", as the fans' page calls it (``PLATFORM_NAMES`` in
``server/web/static/js/ui.js``)."""

PLATFORM_NAMES: dict[str, str] = {
    "twitch": "Twitch",
    "youtube": "YouTube",
    "tiktok": "TikTok",
    "discord": "Discord",
    "audifi": "V Studio",
}
"""What people call each platform, the same words as on the fans' page."""


def platform_label(platform: str | None) -> str:
    if platform is None:
        return "all platforms"
    return PLATFORM_NAMES.get(platform, platform)


def badge(platform: str) -> Text:
    """The platform's badge, white on its colour."""
    label, colour = PLATFORM_STYLE.get(platform, (platform[:2].upper(), "grey50"))
    return Text(f" {label} ", style=f"bold #ffffff on {colour}")


def name_text(line: ChatLine, muted: bool = False) -> Text:
    """The sender's name in the platform's colour, with moderator and subscriber marks."""
    _, colour = PLATFORM_STYLE.get(line.platform, ("", "grey70"))
    text = Text()
    if line.is_moderator:
        text.append("◆", style="bold green")
    if line.is_subscriber:
        text.append("★", style="bold yellow")
    text.append(line.name, style=f"bold {colour}" if not muted else "dim strike")
    return text
