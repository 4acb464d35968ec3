"""The call signatures of the fixture factories, for annotating the tests that receive them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tests.support.live_server import LiveServer

__all__ = ["ServerFactory"]


class ServerFactory(Protocol):
    """The ``server_factory`` fixture: a ``vstudio serve`` of the test's own, stopped after it.

    Settings are ``VSTUDIO_*`` keywords: ``server_factory(VSTUDIO_MAX_VIEWERS="3", workers=2)``;
    ``port`` reuses a port (0 takes a free one).
    """

    def __call__(self, *, workers: int = 1, port: int = 0, **env: str) -> LiveServer: ...
