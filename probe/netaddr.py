"""Address facts the probe relies on: bogons, and addresses never to dial.

A "bogon" is an address from an IANA special-purpose range (RFC 6890 and
successors): a censor's resolver often answers with one (127.0.0.1, 0.0.0.0,
10.x) instead of the real address.  Private ranges are bogons but may still be
dialled, because ISPs host blockpages on them; loopback, unspecified,
multicast and link-local addresses are never dialled, so a poisoned answer
cannot make the probe talk to services on its own host.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BOGON_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def parse(address: str) -> IPAddress | None:
    """The address as an ipaddress object, or None when it is not an IP literal."""
    try:
        return ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None


def is_ip(address: str) -> bool:
    return parse(address) is not None


def family(address: str) -> Literal[4, 6]:
    ip = parse(address)
    if ip is None:
        raise ValueError(f"not an IP address: {address!r}")
    return 6 if ip.version == 6 else 4


def is_bogon(address: str) -> bool:
    """True for addresses in IANA special-purpose ranges (not globally routable)."""
    ip = parse(address)
    if ip is None:
        return False
    return any(ip in net for net in _BOGON_NETWORKS if net.version == ip.version)


def is_dialable(address: str, *, allow_loopback: bool = False) -> bool:
    """False for addresses the probe must never connect to (see module docstring).

    ``allow_loopback`` admits loopback only, for tests whose servers run in
    process; the CLI never sets it.
    """
    ip = parse(address)
    if ip is None:
        return False
    if ip.is_loopback:
        return allow_loopback
    return not (ip.is_unspecified or ip.is_multicast or ip.is_link_local)


def endpoint_label(address: str, port: int) -> str:
    """``1.2.3.4:443`` or ``[2001:db8::1]:443``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
