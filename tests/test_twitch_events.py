"""Twitch money and community events: every USERNOTICE msg-id, bits, shared chat, replies.

The lines follow Twitch's IRC tag reference (dev.twitch.tv/docs/irc/tags) and real traffic; each
test asserts the mapped fields, so a wrong branch or a swapped field fails here.
"""

from __future__ import annotations

import pytest

from broker.models import NormalizedChatMessage, PlatformEvent
from ingest.irc import parse_line
from ingest.twitch_map import IGNORED_NOTICES, NOTICE_KINDS, to_item, to_items

# Twitch's docs, PRIVMSG with bits.
CHEER = (
    "@badge-info=;badges=staff/1,bits/1000;bits=100;color=;display-name=ronni;emotes=;"
    "id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=0;room-id=12345678;subscriber=0;"
    "tmi-sent-ts=1507246572675;turbo=1;user-id=12345678;user-type=staff "
    ":ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :cheer100"
)
# Twitch's docs, resub with a message.
RESUB = (
    "@badge-info=;badges=staff/1,broadcaster/1,turbo/1;color=#008000;display-name=ronni;"
    "emotes=;id=db25007f-7a18-43eb-9379-80131e44d633;login=ronni;mod=0;msg-id=resub;"
    "msg-param-cumulative-months=6;msg-param-streak-months=2;msg-param-should-share-streak=1;"
    "msg-param-sub-plan=Prime;msg-param-sub-plan-name=Prime;room-id=12345678;subscriber=1;"
    "system-msg=ronni\\shas\\ssubscribed\\sfor\\s6\\smonths!;tmi-sent-ts=1507246572675;turbo=1;"
    "user-id=87654321;user-type=staff :tmi.twitch.tv USERNOTICE #dallas "
    ":Great stream -- keep it up!"
)
# Twitch's docs, a single gifted sub.
SUBGIFT = (
    "@badge-info=;badges=staff/1,premium/1;color=#0000FF;display-name=TWW2;emotes=;"
    "id=e9176cd8-5e22-4684-ad40-ce53c2561c5e;login=tww2;mod=0;msg-id=subgift;msg-param-months=1;"
    "msg-param-recipient-display-name=Mr_Woodchuck;msg-param-recipient-id=55554444;"
    "msg-param-recipient-user-name=mr_woodchuck;msg-param-sub-plan-name=House\\sof\\sNyoro~n;"
    "msg-param-sub-plan=1000;room-id=19571752;subscriber=0;"
    "system-msg=TWW2\\sgifted\\sa\\sTier\\s1\\ssub\\sto\\sMr_Woodchuck!;tmi-sent-ts=1521159445153;"
    "turbo=0;user-id=87654321;user-type=staff :tmi.twitch.tv USERNOTICE #forstycup"
)
# Twitch's docs, a raid.
RAID = (
    "@badge-info=;badges=turbo/1;color=#9ACD32;display-name=TestChannel;emotes=;"
    "id=3d830f12-795c-447d-af3c-ea05e40fbddb;login=testchannel;mod=0;msg-id=raid;"
    "msg-param-displayName=TestChannel;msg-param-login=testchannel;msg-param-viewerCount=15;"
    "room-id=33332222;subscriber=0;system-msg=15\\sraiders\\sfrom\\sTestChannel\\shave\\sjoined!;"
    "tmi-sent-ts=1507246572675;turbo=1;user-id=123456;user-type= "
    ":tmi.twitch.tv USERNOTICE #othertestchannel"
)
# A real gift bomb: the submysterygift, then one subgift line per recipient, all carrying
# msg-param-community-gift-id.
BOMB = (
    "@badge-info=subscriber/25;badges=subscriber/3012,sub-gifter/550;color=#FF7F50;"
    "display-name=Bent_Knee;emotes=;flags=;id=954b764f-0b73-440f-9528-818fba5eb210;"
    "login=bent_knee;mod=0;msg-id=submysterygift;msg-param-community-gift-id=5596808143494217874;"
    "msg-param-mass-gift-count=5;msg-param-origin-id=5596808143494217874;"
    "msg-param-sender-count=570;msg-param-sub-plan=1000;room-id=204730616;subscriber=1;"
    "system-msg=Bent_Knee\\sis\\sgifting\\s5\\sTier\\s1\\sSubs\\sto\\sCinna's\\scommunity!;"
    "tmi-sent-ts=1730308163912;user-id=183568249;user-type=;vip=0 :tmi.twitch.tv USERNOTICE #cinna"
)


def bomb_line(n: int) -> str:
    return (
        "@badge-info=subscriber/25;badges=subscriber/3012,sub-gifter/550;display-name=Bent_Knee;"
        f"emotes=;id=0000000{n}-0b73-440f-9528-818fba5eb210;login=bent_knee;mod=0;"
        "msg-id=subgift;msg-param-community-gift-id=5596808143494217874;msg-param-months=1;"
        f"msg-param-origin-id=5596808143494217874;msg-param-recipient-display-name=Fan{n};"
        f"msg-param-recipient-id={n};msg-param-recipient-user-name=fan{n};"
        "msg-param-sender-count=0;msg-param-sub-plan=1000;room-id=204730616;subscriber=1;"
        "tmi-sent-ts=1730308164000;user-id=183568249;user-type= :tmi.twitch.tv USERNOTICE #cinna"
    )


def notice(msg_id: str, extra: str = "", text: str = "") -> str:
    trailing = f" :{text}" if text else ""
    return (
        f"@badges=subscriber/6;display-name=Fan;id=n-{msg_id};login=fan;msg-id={msg_id};{extra}"
        f"room-id=1;tmi-sent-ts=1700000000000;user-id=42 :tmi.twitch.tv USERNOTICE #chan{trailing}"
    )


def events(line: str) -> list[PlatformEvent]:
    return [item for item in to_items(parse_line(line)) if isinstance(item, PlatformEvent)]


def one_event(line: str) -> PlatformEvent:
    [event] = events(line)
    return event


def test_bits_are_a_chat_line_and_a_cheer_in_bits() -> None:
    chat, cheer = to_items(parse_line(CHEER))
    assert isinstance(chat, NormalizedChatMessage) and chat.text == "cheer100"
    assert isinstance(cheer, PlatformEvent)
    assert (cheer.kind, cheer.amount_minor, cheer.currency, cheer.count) == (
        "cheer",
        100,
        "BITS",
        100,
    )
    assert cheer.id == "twitch:b34ccfc7-4977-403a-8a94-33c6bac34fb8:cheer"
    assert (cheer.username, cheer.user_id, cheer.message) == ("ronni", "12345678", "cheer100")


def test_a_plain_message_has_no_cheer() -> None:
    assert len(to_items(parse_line(CHEER.replace("bits=100;", "")))) == 1


def test_sub_resub_and_their_fields() -> None:
    resub = one_event(RESUB)
    assert (resub.kind, resub.months, resub.tier, resub.count) == ("resub", 6, "Prime", 1)
    assert resub.message == "Great stream -- keep it up!"
    sub = one_event(RESUB.replace("msg-id=resub", "msg-id=sub"))
    assert sub.kind == "sub"


def test_single_gift_sub_counts_one_and_names_the_recipient() -> None:
    gift = one_event(SUBGIFT)
    assert (gift.kind, gift.count, gift.recipient, gift.recipient_display_name) == (
        "giftsub",
        1,
        "mr_woodchuck",
        "Mr_Woodchuck",
    )
    assert (gift.username, gift.tier, gift.group_id) == ("tww2", "Tier 1", None)


def test_gift_bomb_counts_five_not_six_nor_ten() -> None:
    lines = [BOMB, *(bomb_line(n) for n in range(1, 6))]
    mapped = [one_event(line) for line in lines]
    assert mapped[0].kind == "giftbomb" and mapped[0].count == 5
    assert [event.kind for event in mapped[1:]] == ["giftsub"] * 5
    assert {event.group_id for event in mapped} == {"5596808143494217874"}
    assert [event.recipient for event in mapped[1:]] == [f"fan{n}" for n in range(1, 6)]
    assert sum(event.count or 0 for event in mapped) == 5


def test_raid_counts_its_viewers() -> None:
    raid = one_event(RAID)
    assert (raid.kind, raid.count, raid.username) == ("raid", 15, "testchannel")


@pytest.mark.parametrize(
    ("msg_id", "extra", "kind", "count", "detail"),
    [
        ("giftpaidupgrade", "msg-param-sender-login=gifter;", "subupgrade", None, None),
        ("primepaidupgrade", "msg-param-sub-plan=1000;", "subupgrade", None, "Tier 1"),
        ("communitypayforward", "msg-param-prior-gifter-user-name=g;", "payforward", None, None),
        ("standardpayforward", "msg-param-recipient-user-name=r;", "payforward", None, None),
        ("announcement", "msg-param-color=PRIMARY;", "announcement", None, "PRIMARY"),
        (
            "viewermilestone",
            "msg-param-category=watch-streak;msg-param-value=3;",
            "milestone",
            3,
            "watch-streak",
        ),
        ("bitsbadgetier", "msg-param-threshold=1000;", "milestone", 1000, "bits badge"),
    ],
)
def test_other_notices(
    msg_id: str, extra: str, kind: str, count: int | None, detail: str | None
) -> None:
    event = one_event(notice(msg_id, extra, "hello chat"))
    assert (event.kind, event.count, event.detail) == (kind, count, detail)
    assert event.message == "hello chat" and event.id == f"twitch:n-{msg_id}"


@pytest.mark.parametrize("msg_id", sorted(IGNORED_NOTICES))
def test_ignored_notices_map_to_nothing(msg_id: str) -> None:
    assert to_item(parse_line(notice(msg_id))) is None


def test_no_notice_is_both_mapped_and_ignored() -> None:
    assert not set(NOTICE_KINDS) & set(IGNORED_NOTICES)


# Twitch's docs, shared chat: a message sent in room 1 seen in #pajlada (room 11148817).
SHARED = (
    "@badge-info=;badges=staff/1,raging-wolf-helm/1;color=#DAA520;display-name=lahoooo;emotes=;"
    "first-msg=0;flags=;id=01cd601f-bc3f-49d5-ab4b-136fa9d6ec22;mod=0;returning-chatter=0;"
    "room-id=11148817;source-badge-info=subscriber/4;source-badges=moderator/1,subscriber/3;"
    "source-id=4e1a26d3-2bd6-4c66-9a2b-7e5a11e4c4c1;source-room-id=1;subscriber=0;"
    "tmi-sent-ts=1726008839164;turbo=0;user-id=1;user-type=staff "
    ":lahoooo!lahoooo@lahoooo.tmi.twitch.tv PRIVMSG #pajlada :one"
)


def test_shared_chat_is_keyed_by_source_id_with_source_badges() -> None:
    message = to_item(parse_line(SHARED))
    assert isinstance(message, NormalizedChatMessage)
    assert message.id == "twitch:4e1a26d3-2bd6-4c66-9a2b-7e5a11e4c4c1"
    assert message.source_channel == "1"
    assert message.badges == ["moderator", "subscriber"]
    assert message.is_subscriber is True and message.is_moderator is True
    # the same message seen in the origin channel: same id, so it is published once
    home = SHARED.replace("room-id=11148817", "room-id=1").replace(
        "id=01cd601f-bc3f-49d5-ab4b-136fa9d6ec22", "id=4e1a26d3-2bd6-4c66-9a2b-7e5a11e4c4c1"
    )
    again = to_item(parse_line(home))
    assert isinstance(again, NormalizedChatMessage)
    assert again.id == message.id and again.source_channel is None


def test_shared_chat_notice_stands_for_its_source_msg_id() -> None:
    line = (
        "@badges=;display-name=A;id=x1;login=a;msg-id=sharedchatnotice;source-msg-id=announcement;"
        "msg-param-color=PRIMARY;room-id=1;source-id=s1;source-room-id=1025594235;"
        "tmi-sent-ts=1;user-id=5 :tmi.twitch.tv USERNOTICE #chan :hello all"
    )
    event = one_event(line)
    assert (event.kind, event.id, event.source_channel) == (
        "announcement",
        "twitch:s1",
        "1025594235",
    )


def test_founder_counts_as_subscriber() -> None:
    line = (
        "@badge-info=founder/12;badges=founder/0;display-name=Early;id=f1;mod=0;room-id=1;"
        "subscriber=0;tmi-sent-ts=1;user-id=9 :early!early@early.tmi.twitch.tv PRIVMSG #chan :hi"
    )
    message = to_item(parse_line(line))
    assert isinstance(message, NormalizedChatMessage) and message.is_subscriber is True


def test_reply_first_message_highlight_and_reward() -> None:
    line = (
        "@badges=;custom-reward-id=9b3c6f7e;display-name=Fan;first-msg=1;id=r1;"
        "msg-id=highlighted-message;reply-parent-display-name=Ronni;reply-parent-msg-body=hi\\sall;"
        "reply-parent-msg-id=p1;reply-parent-user-id=7;reply-parent-user-login=ronni;room-id=1;"
        "tmi-sent-ts=1;user-id=9 :fan!fan@fan.tmi.twitch.tv PRIVMSG #chan :@Ronni hello"
    )
    chat, reward = to_items(parse_line(line))
    assert isinstance(chat, NormalizedChatMessage) and isinstance(reward, PlatformEvent)
    assert chat.reply_parent is not None
    assert (chat.reply_parent.id, chat.reply_parent.username, chat.reply_parent.text) == (
        "twitch:p1",
        "ronni",
        "hi all",
    )
    assert (chat.first_message, chat.highlighted) == (True, True)
    assert (reward.kind, reward.detail, reward.message) == ("reward", "9b3c6f7e", "@Ronni hello")
    wire = chat.wire()
    assert wire["replyParent"]["id"] == "twitch:p1" and wire["firstMessage"] is True
