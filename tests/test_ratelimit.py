"""The sliding-window limiter, pure (a clock passed in), and its Redis twin."""

from __future__ import annotations

import uuid

from broker import Bus
from broker.models import MessageType
from config import ServerSettings
from server.ratelimit import Limit, RedisWindow, SlidingWindow, account_limits, limits_for

CHAT = (Limit("any", 50, 60.0), Limit("chat", 5, 10.0))


def test_five_chat_messages_per_ten_seconds_then_retry_after() -> None:
    window = SlidingWindow()
    assert all(window.retry_after(CHAT, 100.0 + n) is None for n in range(5))
    wait = window.retry_after(CHAT, 105.0)
    assert wait == 5.0  # the first message (t=100) leaves the window at t=110
    assert window.retry_after(CHAT, 110.0) is None


def test_refused_messages_do_not_use_up_the_budget() -> None:
    window = SlidingWindow()
    limits = (Limit("chat", 1, 10.0),)
    assert window.retry_after(limits, 0.0) is None
    for t in range(1, 10):
        assert window.retry_after(limits, float(t)) is not None
    assert window.retry_after(limits, 10.0) is None


def test_the_any_bucket_is_shared_by_every_kind() -> None:
    window = SlidingWindow()
    any_only = (Limit("any", 3, 60.0),)
    with_chat = (Limit("any", 3, 60.0), Limit("chat", 5, 10.0))
    assert window.retry_after(any_only, 0.0) is None
    assert window.retry_after(any_only, 1.0) is None
    assert window.retry_after(with_chat, 2.0) is None
    wait = window.retry_after(with_chat, 3.0)
    assert wait == 57.0


def test_limits_follow_the_settings() -> None:
    settings = ServerSettings(chat_rate_limit=2, chat_rate_window=1.5, message_rate_limit=9)
    assert limits_for(settings, MessageType.CHAT_MESSAGE) == (
        Limit("any", 9, 60.0),
        Limit("chat", 2, 1.5),
    )
    assert [limit.name for limit in limits_for(settings, MessageType.REACTION_SEND)] == [
        "any",
        "reaction",
    ]
    assert [limit.name for limit in limits_for(settings, MessageType.POLL_VOTE)] == ["any"]


async def test_redis_window_is_the_same_rule_shared_by_clients(bus: Bus) -> None:
    prefix = f"test:rate:{uuid.uuid4().hex}"
    limits = (Limit("chat", 2, 10.0),)
    first, second = RedisWindow(bus.redis), RedisWindow(bus.redis)
    assert await first.retry_after(prefix, limits, 1000.0) is None
    assert await second.retry_after(prefix, limits, 1001.0) is None
    wait = await first.retry_after(prefix, limits, 1002.0)
    assert wait is not None and abs(wait - 8.0) < 0.01
    assert await second.retry_after(prefix, limits, 1010.5) is None


def test_limits_follow_settings_changed_at_run_time() -> None:
    """The limits are kept per kind (asked once per frame), but by the settings' values."""
    settings = ServerSettings(chat_rate_limit=2, message_rate_limit=9)
    assert limits_for(settings, MessageType.CHAT_MESSAGE)[1].count == 2
    settings.chat_rate_limit = 3
    settings.message_rate_window = 7.0
    chat = limits_for(settings, MessageType.CHAT_MESSAGE)
    assert [(limit.name, limit.count) for limit in chat] == [("any", 9), ("chat", 3)]
    assert chat[0].window == 7.0
    assert account_limits(settings, MessageType.CHAT_MESSAGE) == chat[1:]
    assert account_limits(settings, MessageType.POLL_VOTE) == ()
