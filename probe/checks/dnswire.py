"""A fast builder of plain DNS queries and reader of the common shape of a DNS
reply; dnspython builds and reads the rest.

Queries: :func:`make_query` builds, byte for byte, what dnspython's
``make_query(name, type, use_edns=0)`` sends (a recursive query with an empty
EDNS0 OPT record offering 1232 bytes) for a plain ASCII name (letters, digits,
``-`` and ``_``) and type A, AAAA or CNAME, and declines anything else (an
escape, a non-ASCII name, an empty or over-long label, another type), which
dnspython then builds.  Importing dnspython's message machinery is about a
seventh of a one-off check's CPU; a check whose replies are of the common
shape no longer imports it at all.

Why a hand-written reader at all: parsing replies with dnspython
(``dns.message.from_wire`` plus ``is_response``) was about 6 % of the CPU a
test list costs (four replies per domain, each built into rdata objects, rrsets
and enums only to be turned into a few strings).  A reply to our query usually
has one shape: our question, then A, AAAA or CNAME records, perhaps an SOA in
the authority section and an empty EDNS OPT record.  :func:`read_reply` reads
exactly that shape and **declines** (returns None) anything else: a wrong id,
another question, another record type, EDNS options, a truncated (TC) reply,
an escaped character in a name, trailing bytes, any malformation.  A declined
packet goes to dnspython, which decides as before.  So a reply is either read
here with dnspython's result, or by dnspython itself: the differential test
(``tests/probe/checks/test_dnswire.py``) holds this reader to dnspython's
answer on generated and mutated (hostile) replies, and the builder to
dnspython's bytes on generated names.

What "dnspython's result" means, and is mirrored here: names are compared
case-insensitively; compression pointers must point strictly backwards and
into bytes before the name part that jumped (at most 16 jumps); a name is at
most 255 bytes; records of one owner and type form one set (duplicates
dropped, the smallest TTL, a TTL above 2**31 - 1 read as 0, a second CNAME
replacing the first); the rcode includes EDNS's extended bits.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from probe.observations import DNSRecord

_A, _CNAME, _SOA, _AAAA, _OPT = 1, 5, 6, 28, 41
_IN = 1
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_QR, TC, _RD = 0x8000, 0x0200, 0x0100
_TYPES = {"A": _A, "AAAA": _AAAA, "CNAME": _CNAME}
_EDNS_PAYLOAD = 1232  # dnspython's default (dns.message.DEFAULT_EDNS_PAYLOAD)
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_MAX_HOPS = 16
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QUESTION = struct.Struct("!HH")
_OPT_RECORD = b"\0" + _RR.pack(_OPT, _EDNS_PAYLOAD, 0, 0)  # root owner, version 0, no flags


def make_query(qname: str, qtype: str) -> tuple[bytes, tuple[bytes, ...], int] | None:
    """dnspython's ``make_query(qname, qtype, use_edns=0).to_wire()`` with id 0,
    the question's labels (lowercase) and its type, for a plain ASCII name and
    type A, AAAA or CNAME; None for anything else (dnspython builds it)."""
    rdtype = _TYPES.get(qtype)
    text = qname[:-1] if qname.endswith(".") else qname
    if rdtype is None or not text.isascii():
        return None
    labels = text.encode("ascii").split(b".")
    if any(not 0 < len(label) < 64 or not _PLAIN.issuperset(label) for label in labels):
        return None
    name = b"".join(bytes((len(label),)) + label for label in labels) + b"\0"
    if len(name) > 255:
        return None
    header = _HEADER.pack(0, _RD, 1, 0, 0, 1)
    wire = header + name + _QUESTION.pack(rdtype, _IN) + _OPT_RECORD
    return wire, tuple(label.lower() for label in labels), rdtype


class _Decline(Exception):
    """Not the common shape: dnspython decides."""


def _name(wire: bytes, at: int, end: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at ``at`` (read no further than ``end``) and the
    offset after it, with dnspython's rules for compression pointers."""
    labels: list[bytes] = []
    size = 1  # the root label
    lowest = at  # where the part being read starts: a pointer must go below it
    after = -1
    hops = 0
    while True:
        if at >= end:
            raise _Decline
        count = wire[at]
        if count == 0:
            at += 1
            break
        if count < 64:
            if at + 1 + count > end:
                raise _Decline
            labels.append(wire[at + 1 : at + 1 + count])
            size += count + 1
            at += 1 + count
        elif count >= 192:
            if at + 2 > end:
                raise _Decline
            target = (count & 0x3F) << 8 | wire[at + 1]
            hops += 1
            if target >= lowest or hops > _MAX_HOPS:
                raise _Decline
            if after < 0:
                after = at + 2
            end = lowest  # what the pointer reaches must end before the part that jumped
            lowest = at = target
        else:
            raise _Decline
    if size > 255:
        raise _Decline
    return tuple(labels), (after if after >= 0 else at)


def _text(labels: tuple[bytes, ...]) -> str:
    """The name as observations store it; declines names dnspython would escape."""
    if not labels or any(not _PLAIN.issuperset(label) for label in labels):
        raise _Decline
    return b".".join(labels).decode("ascii").lower()


def read_reply(
    wire: bytes, qid: int, question: tuple[bytes, ...], qtype: int
) -> tuple[str, tuple[DNSRecord, ...]] | None:
    """The rcode and the A, AAAA and CNAME answer records of ``wire`` if it is a
    plain, untruncated reply to query ``qid`` for ``question`` (lowercase
    labels) and ``qtype``; None when it is not that shape (dnspython decides)."""
    try:
        return _read(wire, qid, question, qtype)
    except _Decline:
        return None


def _read(
    wire: bytes, qid: int, question: tuple[bytes, ...], qtype: int
) -> tuple[str, tuple[DNSRecord, ...]]:
    size = len(wire)
    if size < 12:
        raise _Decline
    rid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if rid != qid or not flags & _QR or flags & 0x7800 or flags & TC or qdcount != 1:
        raise _Decline  # the opcode must be QUERY's (0), as ours
    labels, at = _name(wire, 12, size)
    if at + 4 > size or tuple(label.lower() for label in labels) != question:
        raise _Decline
    if _QUESTION.unpack_from(wire, at) != (qtype, _IN):
        raise _Decline
    at += 4
    sets: dict[tuple[tuple[bytes, ...], int], _Set] = {}
    for _ in range(ancount):
        owner, at = _name(wire, at, size)
        rtype, rclass, ttl, rdlen = _record(wire, at, size)
        at += 10
        if rclass != _IN or rtype not in (_A, _AAAA, _CNAME):
            raise _Decline
        end = at + rdlen
        if rtype == _A and rdlen == 4:
            value = socket.inet_ntoa(wire[at:end])
        elif rtype == _AAAA and rdlen == 16:
            value = str(ipaddress.IPv6Address(wire[at:end]))
        elif rtype == _CNAME:
            target, after = _name(wire, at, end)
            if after != end:
                raise _Decline
            value = _text(target)
        else:
            raise _Decline
        at = end
        _add(sets, owner, rtype, 0 if ttl > 0x7FFFFFFF else ttl, value)
    for _ in range(nscount):  # an SOA is all a plain reply carries here
        _, at = _name(wire, at, size)
        rtype, rclass, _, rdlen = _record(wire, at, size)
        at += 10
        end = at + rdlen
        if rtype != _SOA or rclass != _IN:
            raise _Decline
        _, at = _name(wire, at, end)
        _, at = _name(wire, at, end)
        if at + 20 != end:
            raise _Decline
        at = end
    extended = 0
    for index in range(arcount):  # one empty OPT, last
        owner, at = _name(wire, at, size)
        rtype, _, ttl, rdlen = _record(wire, at, size)
        at += 10
        if owner or rtype != _OPT or rdlen or index:
            raise _Decline
        extended = (ttl >> 20) & 0xFF0
    if at != size:
        raise _Decline  # trailing bytes
    rcode = _RCODES.get((flags & 0xF) | extended)
    if rcode is None:
        raise _Decline
    records = tuple(
        DNSRecord(_NAMES[rtype], found.owner, value, found.ttl)
        for (_, rtype), found in sets.items()
        for value in found.values
    )
    return rcode, records


_NAMES = {_A: "A", _AAAA: "AAAA", _CNAME: "CNAME"}


class _Set:
    """The records of one owner and type, as dnspython's rrset keeps them."""

    __slots__ = ("owner", "ttl", "values")

    def __init__(self, owner: str, ttl: int, value: str) -> None:
        self.owner, self.ttl, self.values = owner, ttl, [value]


def _record(wire: bytes, at: int, size: int) -> tuple[int, int, int, int]:
    if at + 10 > size:
        raise _Decline
    rtype, rclass, ttl, rdlen = _RR.unpack_from(wire, at)
    if at + 10 + rdlen > size:
        raise _Decline
    return rtype, rclass, ttl, rdlen


def _add(
    sets: dict[tuple[tuple[bytes, ...], int], _Set],
    owner: tuple[bytes, ...],
    rtype: int,
    ttl: int,
    value: str,
) -> None:
    """dnspython's rrset semantics: one set per owner (any case) and type, the
    smallest TTL, no duplicates, one CNAME (the last)."""
    key = (tuple(label.lower() for label in owner), rtype)
    found = sets.get(key)
    if found is None:
        sets[key] = _Set(_text(owner), ttl, value)
        return
    found.ttl = min(found.ttl, ttl)
    if rtype == _CNAME:
        found.values.clear()
    if value not in found.values:
        found.values.append(value)
