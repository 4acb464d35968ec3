"""The WebSocket endpoint reads its query from the raw path (``request.query`` would stay cached
on the request for the whole connection, and the guard's upgrades have no aiohttp request); it
must read what ``request.query`` reads."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from server.transport.ws import query_of


@pytest.mark.parametrize(
    "path",
    [
        "/v1/vstudio/ws?ticket=eyJ1Ijoidj.Ab-_c1",
        "/v1/vstudio/ws/s1?sessionId=s1&role=producer&since=1700000000000-3",
        "/v1/vstudio/ws?ticket=a&ticket=b",  # the first value wins, as MultiDict.get
        "/v1/vstudio/ws?ticket=&role",  # present but blank
        "/v1/vstudio/ws?sessionId=a%20b&role=vi+ewer&x=%E2%9C%93",  # decoded, + is a space
        "/v1/vstudio/ws",
    ],
)
def test_the_query_is_read_as_request_query_reads_it(path: str) -> None:
    request = make_mocked_request("GET", path)
    expected = {name: request.query.get(name) for name in request.query}
    assert query_of(path) == expected
