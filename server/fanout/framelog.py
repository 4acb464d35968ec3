"""The frames a session's WebSocket clients have not all had yet, by sequence number.

Fan-out appends each frame once; every client remembers the sequence number of the next frame
it needs. A client that is behind by several frames gets them joined into one write, and the
joined bytes are built once for all clients that are behind by the same amount (in practice
one or two groups), so catching up costs one ``transport.write`` per client, not one per frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.fanout.hub import Outgoing, Subscriber

__all__ = ["FrameLog", "unseen_part"]


def unseen_part(out: Outgoing, sub: Subscriber) -> Outgoing | None:
    """``out`` as a client that joined with a replay (``sub.fresh``) must get it.

    Frames, or the chat inside them, that it already had through its catch-up (ids up to
    ``sub.seen``) are left out; the first frame newer than that ends the filtering.
    """
    if not sub.fresh:
        return out
    own = out.after(sub.seen) if sub.seen >= out.first_id else out
    if out.last_id > sub.seen:
        sub.fresh = False
    return own


class FrameLog:
    """Frames waiting for some client, numbered from ``base``."""

    __slots__ = ("_joined", "base", "frames")

    def __init__(self) -> None:
        self.frames: list[Outgoing] = []
        self.base = 0
        self._joined: dict[int, bytes] = {}

    @property
    def end(self) -> int:
        """The sequence number the next frame will get; a client at ``end`` has everything."""
        return self.base + len(self.frames)

    def append(self, out: Outgoing) -> None:
        self.frames.append(out)
        self._joined.clear()

    def since(self, seq: int) -> bytes:
        """The WebSocket bytes of every frame from ``seq`` on, built once per ``seq``."""
        data = self._joined.get(seq)
        if data is None:
            rest = self.frames[seq - self.base :]
            data = rest[0].ws if len(rest) == 1 else b"".join(out.ws for out in rest)
            self._joined[seq] = data
        return data

    def since_for(self, seq: int, sub: Subscriber) -> bytes:
        """Like :meth:`since` for one client, without what it already had (see unseen_part)."""
        parts = [unseen_part(out, sub) for out in self.frames[seq - self.base :]]
        return b"".join(own.ws for own in parts if own is not None)

    def trim(self, upto: int) -> list[Outgoing]:
        """Forget the frames before ``upto`` (every client has them); the forgotten frames."""
        count = upto - self.base
        if count <= 0:
            return []
        gone = self.frames[:count]
        del self.frames[:count]
        self.base = upto
        self._joined.clear()
        return gone
