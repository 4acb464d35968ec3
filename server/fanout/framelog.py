"""The frames a session's WebSocket clients have not all had yet, by sequence number.

Fan-out appends each frame once; every client remembers the sequence number of the next frame
it needs. A client that is behind by several frames gets them joined into one write, and the
joined bytes are built once for all clients that are behind by the same amount (in practice
one or two groups), so catching up costs one ``transport.write`` per client, not one per frame.
"""

from __future__ import annotations

from server.fanout.frame import Outgoing, StreamId

__all__ = ["FrameLog", "unseen_part"]


def unseen_part(out: Outgoing, seen: StreamId) -> tuple[Outgoing | None, bool]:
    """``out`` for a client that joined with a replay up to ``seen``, and whether it still must
    be filtered.

    Frames, or the chat inside them, that the client already had through its catch-up (ids up
    to ``seen``) are left out (``None`` when nothing is left); the first frame newer than that
    ends the filtering, so the second value is then ``False``.
    """
    own = out.after(seen) if seen >= out.first_id else out
    return own, out.last_id <= seen


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

    def since_for(self, seq: int, seen: StreamId) -> tuple[bytes, bool]:
        """Like :meth:`since` for a client that had a replay up to ``seen``: the bytes without
        what it already had, and whether it still must be filtered (see :func:`unseen_part`)."""
        parts: list[bytes] = []
        filtering = True
        for out in self.frames[seq - self.base :]:
            if filtering:
                own, filtering = unseen_part(out, seen)
                if own is not None:
                    parts.append(own.ws)
            else:
                parts.append(out.ws)
        return b"".join(parts), filtering

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
