"""Key and channel names: the seed's channel names and one hash slot per session."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from redis.crc import key_slot

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


def slot(name: str) -> int:
    return key_slot(name.encode())


def session_builders() -> list[Callable[..., str | tuple[str, ...]]]:
    """Every key or channel builder of ``broker.keys`` that takes a session id first."""
    found = []
    for _, builder in inspect.getmembers(keys, inspect.isfunction):
        if builder.__module__ == keys.__name__:
            params = list(inspect.signature(builder).parameters)
            if params[:1] == ["session_id"]:
                found.append(builder)
    return found


@pytest.mark.parametrize("builder", session_builders(), ids=lambda builder: builder.__name__)
def test_every_session_key_and_channel_lives_in_the_sessions_slot(
    builder: Callable[..., str | tuple[str, ...]],
) -> None:
    """A script may take any of a session's keys together, and ``SPUBLISH`` its channels
    from there, only if they all hash to one cluster slot."""
    params = list(inspect.signature(builder).parameters)[1:]
    samples = {"window": 7}
    names = builder("s-42", *(samples.get(param, "x:y") for param in params))
    for name in names if isinstance(names, tuple) else (names,):
        assert slot(name) == slot(keys.stream("s-42")), name


def test_global_keys_one_script_takes_together_share_a_slot() -> None:
    """The login check takes the user's and the address's failure windows in one script."""
    together = [keys.login_failures_user("alice"), keys.login_failures_address("203.0.113.9")]
    assert len({slot(name) for name in together}) == 1
    assert slot(keys.login_failures_user("bob")) == slot(together[0])


def test_a_wallet_link_and_its_stale_ends_share_a_slot() -> None:
    """Linking takes the account's and the address's link and drops the stale ends (another
    account's, another address's) in one script: every link key carries ``{wallets}``."""
    together = [
        keys.wallet_of("alice"),
        keys.wallet_owner("0xC0FFEE254729296a45a3885639AC7E10F9d54979"),
        keys.wallet_owner("0x00000000000000000000000000000000000000aa"),
        keys.wallet_of("w-0x00000000000000000000000000000000000000aa"),
        keys.wallet_of(""),
        keys.wallet_owner(""),
    ]
    assert len({slot(name) for name in together}) == 1


def test_connection_caps_spread_over_the_cluster() -> None:
    """Each cap's script takes one key (a user's or an address's set), so the sets carry no
    shared hash tag and a connect storm spreads over every shard."""
    for name in (keys.user_connections("alice"), keys.address_connections("203.0.113.9")):
        assert "{" not in name
    users = {slot(keys.user_connections(f"user-{n}")) for n in range(50)}
    assert len(users) > 40
