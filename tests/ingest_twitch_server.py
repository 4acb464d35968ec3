"""Where ``bench/ingest.py`` imports the local Twitch IRC server from (it puts ``tests/`` on
``sys.path``); the server lives in :mod:`tests.support.platforms.twitch_irc`."""

from tests.support.platforms.twitch_irc import TwitchIrcServer

__all__ = ["TwitchIrcServer"]
