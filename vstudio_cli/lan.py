"""``vstudio up --lan``: the address phones on this network reach, and a QR code of a URL.

Finding the address sends nothing: a UDP socket "connected" to a documentation address
(TEST-NET-1) only asks the kernel which source address its route would use. Choosing among
candidates is a pure function, and ``VSTUDIO_LAN_ADDRESS`` overrides both (a machine with
several networks, or a test that must stay on loopback). The QR code is drawn with ``segno``
(pure Python, no dependencies, maintained) as text, two modules per character row.
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
from collections.abc import Iterable

import segno

__all__ = ["LAN_ADDRESS_ENV", "lan_address", "pick_lan_address", "qr_text", "route_source"]

LAN_ADDRESS_ENV = "VSTUDIO_LAN_ADDRESS"
HOME_NETWORKS = tuple(
    ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
"""RFC 1918: the networks of homes and offices (``is_private`` also counts test ranges)."""


def route_source() -> str | None:
    """The local address the default route would send from (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed, never answered
            return str(probe.getsockname()[0])
        except OSError:
            return None


def host_addresses() -> list[str]:
    """The IPv4 addresses this machine's name resolves to."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def pick_lan_address(candidates: Iterable[str | None]) -> str | None:
    """The first private (RFC 1918) address, else the first other routable one; never
    loopback, link-local, unspecified or multicast."""
    usable = []
    for candidate in candidates:
        if not candidate:
            continue
        try:
            address = ipaddress.IPv4Address(candidate)
        except ValueError:
            continue
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            continue
        if address.is_multicast or address.is_reserved:
            continue
        usable.append(address)
    private = [a for a in usable if any(a in net for net in HOME_NETWORKS)]
    chosen = private or usable
    return str(chosen[0]) if chosen else None


def lan_address() -> str | None:
    """``VSTUDIO_LAN_ADDRESS`` if set, else the best of this machine's addresses."""
    forced = os.environ.get(LAN_ADDRESS_ENV)
    if forced:
        return forced
    return pick_lan_address([route_source(), *host_addresses()])


def qr_text(url: str) -> str:
    """``url`` as a QR code in block characters, for a terminal (dark modules on light)."""
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")
