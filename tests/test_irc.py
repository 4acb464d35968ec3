"""The pure IRCv3 parser and the Twitch mapping on real-world lines; no sockets."""

from __future__ import annotations

import pytest

from broker.models import ChatDelete, NormalizedChatMessage, PlatformEvent
from ingest.base import AdapterFatal
from ingest.irc import (
    IrcParseError,
    format_line,
    parse_line,
    parse_tags,
    split_lines,
    unescape_tag_value,
)
from ingest.twitch import TwitchProtocol, TwitchReconnect, normalize_channel
from ingest.twitch_map import parse_badges, parse_emotes, to_item

# From Twitch's IRC documentation.
DOC_PRIVMSG = (
    "@badge-info=;badges=turbo/1;color=#0D4200;display-name=ronni;emotes=25:0-4,12-16/1902:6-10;"
    "id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=0;room-id=1337;subscriber=0;"
    "tmi-sent-ts=1507246572675;turbo=1;user-id=1337;user-type=global_mod "
    ":ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :Kappa Keepo Kappa"
)
# Reported in twitchdev/issues#104: the emote range points one past the end of the text.
OUT_OF_RANGE = (
    "@badge-info=subscriber/3;badges=subscriber/3;color=#0000FF;display-name=Linkoping;"
    "emotes=25:40-44;flags=17-26:S.6;id=744f9c58-b180-4f46-bd9e-b515b5ef75c1;mod=0;"
    "room-id=188442366;subscriber=1;tmi-sent-ts=1566335866017;turbo=0;user-id=91673457;"
    "user-type= :linkoping!linkoping@linkoping.tmi.twitch.tv PRIVMSG #queenqarro "
    ":Då kan du begära skadestånd och förtal Kappa"
)
# Reported in twitchdev/issues#175: a resub with escaped tag values.
RESUB = (
    "@badge-info=subscriber/23;badges=moderator/1,subscriber/12;color=#19E6E6;"
    "display-name=randers;emotes=25:7-11,23-27/499:29-30;flags=;"
    "id=8c2918c2-adf4-4208-a554-8a72d016de70;login=randers;mod=1;msg-id=resub;"
    "msg-param-cumulative-months=23;msg-param-months=0;msg-param-should-share-streak=1;"
    "msg-param-streak-months=23;msg-param-sub-plan-name=look\\sat\\sthose\\sshitty\\semotes,"
    "\\srip\\s$5\\sLUL;msg-param-sub-plan=1000;room-id=11148817;subscriber=1;"
    "system-msg=randers\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s23\\smonths,"
    "\\scurrently\\son\\sa\\s23\\smonth\\sstreak!;tmi-sent-ts=1595497450553;user-id=40286300;"
    "user-type=mod :tmi.twitch.tv USERNOTICE #pajlada :ACTION Kappa TEST TEST Kappa :)"
)
UNICODE_PRIVMSG = (
    "@badge-info=subscriber/14;badges=broadcaster/1,subscriber/12;color=;"
    "display-name=ゆめ\\sちゃん;emotes=25:3-7;first-msg=0;id=0f1e2d3c-aaaa-bbbb-cccc-0123456789ab;"
    "mod=0;room-id=42;subscriber=1;tmi-sent-ts=1700000000123;user-id=777 "
    ":yume_chan!yume_chan@yume_chan.tmi.twitch.tv PRIVMSG #yume_chan :😂🔥 Kappa; hi \\o/"
)


def test_parses_tags_prefix_command_params() -> None:
    message = parse_line(DOC_PRIVMSG + "\r\n")
    assert message.command == "PRIVMSG"
    assert message.params == ("#ronni", "Kappa Keepo Kappa")
    assert message.prefix == "ronni!ronni@ronni.tmi.twitch.tv"
    assert message.nick == "ronni"
    assert message.tags["emotes"] == "25:0-4,12-16/1902:6-10"
    assert message.tags["badge-info"] == ""


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("a\\sb", "a b"),
        ("semi\\:colon", "semi;colon"),
        ("back\\\\slash", "back\\slash"),
        ("cr\\rlf\\n", "cr\rlf\n"),
        ("unknown\\xescape", "unknownxescape"),
        ("trailing\\", "trailing"),
        ("plain", "plain"),
    ],
)
def test_unescapes_tag_values(raw: str, value: str) -> None:
    assert unescape_tag_value(raw) == value


def test_tags_without_values_and_client_tags() -> None:
    assert parse_tags("a;+example.com/b=x\\sy;c=") == {"a": "", "+example.com/b": "x y", "c": ""}


def test_escaped_values_and_trailing_with_colons() -> None:
    message = parse_line(RESUB)
    assert message.tags["system-msg"].startswith("randers subscribed at Tier 1. They've")
    assert message.tags["msg-param-sub-plan-name"] == "look at those shitty emotes, rip $5 LUL"
    assert message.trailing == "ACTION Kappa TEST TEST Kappa :)"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "@only-tags=1",
        "@a=1 :prefix.only",
        ":prefix.only",
        ": PRIVMSG #x :hi",
        "@=novalue :x PRIVMSG #c :hi",
        "PRIV-MSG #c :dash",
        "12 too short numeric",
        "PRIVMSG\0 #c :nul",
        ":nick!u@h :just trailing",
        "ÜNICODE #c :command",
        "x" * 20_000,
    ],
)
def test_garbage_raises_a_parse_error_only(line: str) -> None:
    with pytest.raises(IrcParseError):
        parse_line(line)


def test_lines_without_tags_and_numeric_commands() -> None:
    assert parse_line("PING :tmi.twitch.tv").params == ("tmi.twitch.tv",)
    welcome = parse_line(":tmi.twitch.tv 001 justinfan123 :Welcome, GLHF!")
    assert welcome.command == "001" and welcome.params == ("justinfan123", "Welcome, GLHF!")
    ack = parse_line(":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands")
    assert ack.params == ("*", "ACK", "twitch.tv/tags twitch.tv/commands")
    assert parse_line("reconnect").command == "RECONNECT"


def test_split_lines_and_format_line() -> None:
    assert split_lines("PING :a\r\nPRIVMSG #c :b\r\n\r\n") == ["PING :a", "PRIVMSG #c :b"]
    assert format_line("PONG", "tmi.twitch.tv") == "PONG tmi.twitch.tv"
    assert format_line("PRIVMSG", "#c", "hello there") == "PRIVMSG #c :hello there"
    assert format_line("CAP", "REQ", "a b") == "CAP REQ :a b"
    with pytest.raises(ValueError):
        format_line("JOIN", "two words", "x")


# --- the Twitch mapping -------------------------------------------------------------------------


def test_privmsg_becomes_a_normalized_message_with_emotes() -> None:
    item = to_item(parse_line(DOC_PRIVMSG))
    assert isinstance(item, NormalizedChatMessage)
    assert item.id == "twitch:b34ccfc7-4977-403a-8a94-33c6bac34fb8"
    assert (item.username, item.display_name, item.user_id) == ("ronni", "ronni", "1337")
    assert item.text == "Kappa Keepo Kappa"
    assert item.badges == ["turbo"]
    assert item.is_moderator is False and item.is_subscriber is False
    assert item.timestamp == 1507246572675
    assert [(e.name, e.positions) for e in item.emotes or []] == [
        ("Kappa", [(0, 4), (12, 16)]),
        ("Keepo", [(6, 10)]),
    ]
    assert item.emotes[0].url == "https://static-cdn.jtvnw.net/emoticons/v2/25/default/dark/1.0"
    assert item.wire()["displayName"] == "ronni" and "isSubscriber" in item.wire()


def test_unicode_text_escaped_display_name_and_code_point_positions() -> None:
    item = to_item(parse_line(UNICODE_PRIVMSG))
    assert isinstance(item, NormalizedChatMessage)
    assert item.display_name == "ゆめ ちゃん"
    assert item.text == "😂🔥 Kappa; hi \\o/"
    assert item.emotes is not None and item.emotes[0].name == "Kappa"
    assert item.is_moderator is True  # the broadcaster moderates their own chat
    assert item.is_subscriber is True and item.badges == ["broadcaster", "subscriber"]


def test_out_of_range_emote_is_dropped_not_trusted() -> None:
    item = to_item(parse_line(OUT_OF_RANGE))
    assert isinstance(item, NormalizedChatMessage)
    assert item.emotes is None and item.text.endswith("förtal Kappa")


@pytest.mark.parametrize("raw", ["", "25", "25:", "25:a-b", "25:5-2", ":0-1", "25:0-9", "/"])
def test_malformed_emote_tags_yield_nothing(raw: str) -> None:
    assert parse_emotes(raw, "hi") == []


def test_good_ranges_survive_bad_neighbours() -> None:
    [emote] = parse_emotes("25:0-1,x,7-9/", "hi")
    assert (emote.name, emote.positions) == ("hi", [(0, 1)])


def test_action_messages_lose_the_ctcp_wrapper() -> None:
    line = DOC_PRIVMSG.replace("emotes=25:0-4,12-16/1902:6-10", "emotes=").replace(
        ":Kappa Keepo Kappa", ":\x01ACTION waves\x01"
    )
    item = to_item(parse_line(line))
    assert isinstance(item, NormalizedChatMessage) and item.text == "waves"


def test_badges() -> None:
    assert parse_badges("moderator/1,subscriber/12,") == ["moderator", "subscriber"]
    assert parse_badges("") == []


def test_clearmsg_and_clearchat_become_deletions() -> None:
    clearmsg = parse_line(
        "@login=ronni;room-id=;target-msg-id=abc-123-def;tmi-sent-ts=1642720582342 "
        ":tmi.twitch.tv CLEARMSG #dallas :HeyGuys"
    )
    assert to_item(clearmsg) == ChatDelete(
        message_id="twitch:abc-123-def", reason="deleted by a moderator"
    )
    timeout = to_item(
        parse_line(
            "@ban-duration=350;room-id=12345678;target-user-id=87654321;"
            "tmi-sent-ts=1642719320727 :tmi.twitch.tv CLEARCHAT #dallas :Ronni"
        )
    )
    assert isinstance(timeout, ChatDelete)
    assert (timeout.username, timeout.platform, timeout.reason) == (
        "ronni",
        "twitch",
        "timed out for 350 s",
    )
    cleared = to_item(parse_line("@room-id=1;tmi-sent-ts=1 :tmi.twitch.tv CLEARCHAT #dallas"))
    assert isinstance(cleared, ChatDelete) and cleared.username == "*"


def test_resub_becomes_a_platform_event() -> None:
    event = to_item(parse_line(RESUB))
    assert isinstance(event, PlatformEvent)
    assert (event.kind, event.username, event.count, event.months, event.tier) == (
        "resub",
        "randers",
        1,
        23,
        "Tier 1",
    )
    assert event.id == "twitch:8c2918c2-adf4-4208-a554-8a72d016de70"


def test_channel_names() -> None:
    assert normalize_channel("#SomeChannel") == "somechannel"
    with pytest.raises(ValueError):
        normalize_channel("not a channel!")


# --- the protocol state machine -----------------------------------------------------------------


def test_protocol_hello_anonymous_and_with_token() -> None:
    assert TwitchProtocol("dallas", "justinfan123").hello() == [
        "CAP REQ :twitch.tv/tags twitch.tv/commands",
        "NICK justinfan123",
        "JOIN #dallas",
    ]
    lines = TwitchProtocol("dallas", "mybot", token="abc123").hello()
    assert lines[1] == "PASS oauth:abc123" and lines[2] == "NICK mybot"
    assert TwitchProtocol("d", "n", token="oauth:x").hello()[1] == "PASS oauth:x"


def test_protocol_ping_reconnect_and_join_states() -> None:
    protocol = TwitchProtocol("dallas", "justinfan123")
    assert protocol.receive("PING :tmi.twitch.tv") == ([], ["PONG tmi.twitch.tv"])
    protocol.receive(":tmi.twitch.tv 001 justinfan123 :Welcome, GLHF!")
    assert protocol.state == "logged in"
    protocol.receive(":justinfan123!justinfan123@justinfan123.tmi.twitch.tv JOIN #dallas")
    assert protocol.state == "joined"
    with pytest.raises(TwitchReconnect):
        protocol.receive(":tmi.twitch.tv RECONNECT")


def test_protocol_skips_garbage_and_counts_it() -> None:
    protocol = TwitchProtocol("ronni", "justinfan1")
    no_id = DOC_PRIVMSG.replace(";id=b34", ";xid=b34")
    for line in ["\x00\x01garbage", "@a=1", ": PRIVMSG", no_id]:
        assert protocol.receive(line) == ([], [])
    assert protocol.malformed == 4
    items, _ = protocol.receive(DOC_PRIVMSG)
    assert len(items) == 1


@pytest.mark.parametrize(
    "line",
    [
        ":tmi.twitch.tv NOTICE * :Login authentication failed",
        ":tmi.twitch.tv NOTICE * :Improperly formatted auth",
        ":tmi.twitch.tv NOTICE * :Login unsuccessful",
        "@msg-id=msg_channel_suspended :tmi.twitch.tv NOTICE #gone :This channel does not exist "
        "or has been suspended.",
    ],
)
def test_fatal_notices(line: str) -> None:
    with pytest.raises(AdapterFatal) as caught:
        TwitchProtocol("gone", "justinfan1").receive(line)
    assert "Twitch" in str(caught.value)


def test_other_notices_are_reported_not_fatal() -> None:
    protocol = TwitchProtocol("dallas", "justinfan1")
    line = "@msg-id=emote_only_on :tmi.twitch.tv NOTICE #dallas :This room is in emote-only mode."
    assert protocol.receive(line) == ([], [])
    assert "emote_only_on" in protocol.last_error
