"""Address facts the probe relies on: bogons, and addresses never to dial.

A "bogon" is an address from an IANA special-purpose range (RFC 6890 and
successors): a censor's resolver often answers with one (127.0.0.1, 0.0.0.0,
10.x) instead of the real address.  Private ranges are bogons but may still be
dialled, because ISPs host blockpages on them; addresses that reach the
probe's own host or its link (loopback, "this network", link-local with the
cloud metadata service at 169.254.169.254) and addresses that are no unicast
destination (multicast, broadcast, reserved) are never dialled, so a poisoned
answer cannot make the probe talk to services on its own host.

An IPv6 address can carry an IPv4 address inside it (IPv4-mapped
``::ffff:127.0.0.1``, IPv4-compatible, SIIT, NAT64, 6to4, Teredo); dialling
it reaches that IPv4 address, through the kernel or a translator that may run
on this very host.  Every decision is therefore made on every address the
literal can stand for (:func:`embedded`), and refused when any is refused.

:func:`is_dialable` is the one dial policy: the probe's checks use it, and
servers that dial on a client's behalf (the control helper) use it with
``public_only=True`` so that they never become a way into private networks.

The answers are pure functions of the text, and a check asks them about the
same few addresses dozens of times (every step vets the address it dials, the
classifier looks again), so :func:`parse`, :func:`is_bogon` and
:func:`is_dialable` keep a bounded cache of recent answers (ipaddress objects
are immutable): parsing was ~4 % of the CPU of a list.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*cidrs: str) -> tuple[_Net, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# IANA IPv4 and IPv6 Special-Purpose Address Registries: entries whose
# "globally reachable" is False (or N/A), i.e. bogons.  The few globally
# reachable entries (192.0.0.9/32, 192.0.0.10/32, 64:ff9b::/96, 2001:1::1/128,
# 2001:1::2/128, 2001:3::/32, 2001:4:112::/48, 2001:20::/28, 2001:30::/28,
# 2620:4f:8000::/48) are left out; NAT64's embedded address is judged instead.
_BOGON_NETWORKS = _nets(
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::/96",  # IPv4-compatible (deprecated, RFC 4291): reserved space
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",  # SIIT (RFC 7915): reserved space
    "64:ff9b:1::/48",
    "100::/64",
    "100:0:0:1::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)

# Never dialled, whatever the caller: the probe's own host and link, and
# addresses that are not one unicast destination.
_NEVER = _nets(
    "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the host itself
    "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
    "::/128",
    "fe80::/10",  # link-local
    "ff00::/8",  # multicast
)
_LOOPBACK = _nets("127.0.0.0/8", "::1/128")

# Embeddings (RFC 4291, 6052, 3056, 4380, 7915).
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # prefix length chosen locally
_NAT64_LENGTHS = (48, 56, 64, 96)  # RFC 6052 section 2.2 layouts possible inside a /48
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


_CACHE = 4096  # distinct recent addresses remembered: a few hundred KB at most


@functools.lru_cache(maxsize=_CACHE)
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


def _v4(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(value & 0xFFFFFFFF)


def _rfc6052(ip: ipaddress.IPv6Address) -> list[IPAddress]:
    """The IPv4 addresses a local-use NAT64 address can carry: one per RFC 6052
    layout (section 2.2: bits 64-71 are zero, the suffix after the IPv4 address
    is zero) that fits; every layout when none fits (undecidable: all judged)."""
    octets = ip.packed[:8] + ip.packed[9:]  # without the reserved octet "u"
    found: list[IPAddress] = []
    every: list[IPAddress] = []
    for length in _NAT64_LENGTHS:
        start = length // 8 if length <= 64 else length // 8 - 1
        address = ipaddress.IPv4Address(octets[start : start + 4])
        every.append(address)
        if ip.packed[8] == 0 and not any(octets[start + 4 :]):
            found.append(address)
    return found or every


def embedded(ip: IPAddress) -> tuple[IPAddress, ...]:
    """``ip`` and every IPv4 address dialling it could reach (empty for plain IPv4
    and IPv6 addresses: the address itself is the first item)."""
    if ip.version == 4:
        return (ip,)
    assert isinstance(ip, ipaddress.IPv6Address)
    value = int(ip)
    inner: list[IPAddress] = []
    last32 = (_MAPPED, _TRANSLATED, _NAT64, _COMPATIBLE)
    if any(ip in net for net in last32) and value > 1:  # :: and ::1 are themselves
        inner.append(_v4(value))
    elif ip in _NAT64_LOCAL:
        inner.extend(_rfc6052(ip))
    elif ip in _SIXTOFOUR:
        inner.append(_v4(value >> 80))
    elif ip in _TEREDO:
        server, client = ip.teredo or (None, None)
        inner.extend(a for a in (server, client) if a is not None)
    return (ip, *inner)


def _any_in(addresses: tuple[IPAddress, ...], networks: tuple[_Net, ...]) -> bool:
    return any(a in n for a in addresses for n in networks if n.version == a.version)


@functools.lru_cache(maxsize=_CACHE)
def is_bogon(address: str) -> bool:
    """True for addresses in IANA special-purpose ranges (not globally routable),
    including IPv6 forms of such IPv4 addresses (NAT64 ``64:ff9b::7f00:1``)."""
    ip = parse(address)
    if ip is None:
        return False
    return _any_in(embedded(ip), _BOGON_NETWORKS)


@functools.lru_cache(maxsize=_CACHE)
def is_dialable(address: str, *, allow_loopback: bool = False, public_only: bool = False) -> bool:
    """False for addresses that must never be connected to (see module docstring).

    Decided on the address and every IPv4 address embedded in it.
    ``allow_loopback`` admits loopback (and nothing else refused), for tests
    whose servers run in process; the CLI never sets it.  ``public_only`` also refuses every bogon
    (private, shared, documentation...): for servers that dial on behalf of
    someone else.
    """
    ip = parse(address)
    if ip is None:
        return False
    candidates = embedded(ip)
    if _any_in(candidates, _NEVER):
        return False
    if _any_in(candidates, _LOOPBACK):
        return allow_loopback
    return not (public_only and _any_in(candidates, _BOGON_NETWORKS))


def endpoint_label(address: str, port: int) -> str:
    """``1.2.3.4:443`` or ``[2001:db8::1]:443``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
