"""Key and channel names: the seed's channel names and one hash slot per session."""

from __future__ import annotations

import pytest

from broker import keys


def test_channels_are_the_seeds_names_with_a_hash_tag() -> None:
    assert keys.events_channel("abc") == "vstudio:session:{abc}:events"
    assert keys.chat_channel("abc") == "vstudio:session:{abc}:chat"
    assert keys.polls_channel("abc") == "vstudio:session:{abc}:polls"
    assert keys.GLOBAL_ANNOUNCEMENTS == "vstudio:global:announcements"


def test_every_session_key_shares_the_hash_tag() -> None:
    for name in (keys.stream("abc"), keys.session("abc"), keys.dedupe("abc", "twitch:1")):
        assert "{abc}" in name


def test_session_id_round_trips_through_a_channel() -> None:
    assert keys.session_id_of_channel(keys.chat_channel("s-42")) == "s-42"


@pytest.mark.parametrize("bad", ["", "a}b", "a{b", "a:b", "a b"])
def test_session_ids_that_would_break_the_tag_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        keys.session_prefix(bad)
