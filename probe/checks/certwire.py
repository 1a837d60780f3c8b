"""A fast reader for the fields an observation keeps of a common-shape X.509
certificate; ``cryptography`` reads the rest.

Why a hand-written reader at all: importing ``cryptography.x509`` (its Python
half: the RFC 4514 name parser's regular expressions, ``email.utils``, a few
hundred classes) was about a seventh of a one-off check's CPU, to read five
fields of two or three certificates.  No lighter maintained library gives
``cryptography``'s exact output (its RFC 4514 rendering of names, its checks),
and the stored fields must not change with the reader: old measurements are
re-classified from them.  So :func:`read` reads exactly the common shape and
**declines** (returns None) anything else, which ``cryptography`` then reads
as before: the differential test (``tests/probe/checks/test_certwire.py``)
holds this reader to ``cryptography``'s result on generated certificates, the
system's CA certificates and mutations (hostile DER) of them.

The common shape, checked as strictly as ``cryptography`` loads it (strict
DER: minimal lengths and integers, no trailing bytes): a v1 or v3 certificate;
RSA (PKCS #1 v1.5), ECDSA or EdDSA signature algorithms and keys with the
parameters those take; names of single-attribute RDNs whose values are
PrintableString, UTF8String or IA5String (ASCII); UTCTime or GeneralizedTime
to the second; and only the extensions public CAs put in server
certificates (subjectAltName with DNS names, IP addresses, e-mail addresses
and URIs; basicConstraints, keyUsage, extKeyUsage, the key identifiers,
authorityInfoAccess, CRL distribution points, certificate policies with CPS
URIs, embedded SCTs), each well-formed as ``cryptography`` requires.
Anything else (another extension, a multi-valued RDN, a BMPString, a
non-positive serial...) declines.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable

Fields = tuple[str, str, tuple[str, ...], dt.datetime, dt.datetime]
"""subject, issuer (RFC 4514, as ``cryptography`` writes them), the DNS names and
IP addresses of subjectAltName, notBefore, notAfter (UTC)."""

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OCTET_STRING, _NULL, _OID, _BOOLEAN = (
    0x30, 0x31, 0x02, 0x03, 0x04, 0x05, 0x06, 0x01,
)  # fmt: skip
_UTF8, _PRINTABLE, _IA5, _UTC_TIME, _GENERALIZED_TIME = 0x0C, 0x13, 0x16, 0x17, 0x18

# Algorithm OIDs (DER content) -> the parameters cryptography accepts with them.
_RSA_PKCS1 = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01"
_ECDSA_SHA2 = b"\x2a\x86\x48\xce\x3d\x04\x03"
_NULL_OR_ABSENT, _ABSENT, _CURVE = "null-or-absent", "absent", "named-curve"
_SIGNATURES = {
    **{_RSA_PKCS1 + bytes((n,)): _NULL_OR_ABSENT for n in (5, 11, 12, 13, 14)},
    **{_ECDSA_SHA2 + bytes((n,)): _ABSENT for n in (1, 2, 3, 4)},
    b"\x2b\x65\x70": _ABSENT,  # Ed25519
    b"\x2b\x65\x71": _ABSENT,  # Ed448
}
_KEYS = {
    _RSA_PKCS1 + b"\x01": _NULL_OR_ABSENT,  # rsaEncryption
    b"\x2a\x86\x48\xce\x3d\x02\x01": _CURVE,  # id-ecPublicKey
    b"\x2b\x65\x70": _ABSENT,
    b"\x2b\x65\x71": _ABSENT,
}

# Attribute types with a short name in RFC 4514 output (cryptography's choice).
_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# Attribute types cryptography warns about outside these UTF-8 lengths, or reads
# as bytes (x500UniqueIdentifier): declined, so the warning stays its own.
_LENGTHS = {"2.5.4.6": (2, 2), "1.3.6.1.4.1.311.60.2.1.3": (2, 2), "2.5.4.3": (1, 64)}
_DECLINED_TYPES = frozenset({"2.5.4.45"})
_PRINTABLE_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)
# RFC 4514 section 2.4, as cryptography applies it (NUL as \00).
_ESCAPES = str.maketrans({c: "\\" + c for c in '\\"+,;<>'} | {"\0": "\\00"})

_SAN, _BASIC, _KEY_USAGE, _EXT_KEY_USAGE, _SKI, _AKI, _CRL_POINTS, _POLICIES = (
    b"\x55\x1d\x11", b"\x55\x1d\x13", b"\x55\x1d\x0f", b"\x55\x1d\x25", b"\x55\x1d\x0e",
    b"\x55\x1d\x23", b"\x55\x1d\x1f", b"\x55\x1d\x20",
)  # fmt: skip
_AIA = b"\x2b\x06\x01\x05\x05\x07\x01\x01"  # 1.3.6.1.5.5.7.1.1, authorityInfoAccess
_CPS = b"\x2b\x06\x01\x05\x05\x07\x02\x01"  # 1.3.6.1.5.5.7.2.1, a policy's CPS URI
_SCTS = b"\x2b\x06\x01\x04\x01\xd6\x79\x02\x04\x02"  # 1.3.6.1.4.1.11129.2.4.2


class _Decline(Exception):
    """Not the common shape: cryptography decides."""


def read(der: bytes) -> Fields | None:
    """The stored fields of ``der`` if it is a certificate of the common shape,
    else None (``cryptography`` reads it)."""
    try:
        return _certificate(der)
    except _Decline:
        return None


def _tlv(der: bytes, at: int, end: int) -> tuple[int, int, int]:
    """Tag, content start and content end of the element at ``at``."""
    if at + 2 > end:
        raise _Decline
    tag, length = der[at], der[at + 1]
    if tag & 0x1F == 0x1F:
        raise _Decline  # a high tag number: none of ours
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count < 4 or at + count > end or der[at] == 0:
            raise _Decline
        length = int.from_bytes(der[at : at + count], "big")
        if length < 0x80:
            raise _Decline  # not the shortest form
        at += count
    if at + length > end:
        raise _Decline
    return tag, at, at + length


def _expect(der: bytes, at: int, end: int, tag: int) -> tuple[int, int]:
    found, start, stop = _tlv(der, at, end)
    if found != tag:
        raise _Decline
    return start, stop


def _certificate(der: bytes) -> Fields:
    start, stop = _expect(der, 0, len(der), _SEQUENCE)
    if stop != len(der):
        raise _Decline  # trailing bytes
    at, tbs_end = _expect(der, start, stop, _SEQUENCE)
    signature = _algorithm(der, tbs_end, stop, _SIGNATURES)
    bits, end = _expect(der, signature, stop, _BIT_STRING)
    if end != stop or bits == end or der[bits] != 0:
        raise _Decline  # the signature: whole bytes

    version = 0
    tag, inner, end = _tlv(der, at, tbs_end)
    if tag == 0xA0:  # [0] EXPLICIT version: v3 only (v1 is never written out)
        if der[inner:end] != b"\x02\x01\x02":
            raise _Decline
        version, at = 2, end
    at = _serial(der, at, tbs_end)
    at = _algorithm(der, at, tbs_end, _SIGNATURES)
    issuer, at = _name(der, at, tbs_end)
    inner, at = _expect(der, at, tbs_end, _SEQUENCE)
    not_before, inner = _time(der, inner, at)
    not_after, inner = _time(der, inner, at)
    if inner != at:
        raise _Decline
    subject, at = _name(der, at, tbs_end)
    inner, at = _expect(der, at, tbs_end, _SEQUENCE)  # subjectPublicKeyInfo
    inner = _algorithm(der, inner, at, _KEYS)
    bits, end = _expect(der, inner, at, _BIT_STRING)
    if end != at or bits == end or der[bits] != 0:
        raise _Decline
    sans: tuple[str, ...] = ()
    if at < tbs_end:  # no unique identifiers ([1], [2]): extensions only, in a v3
        inner, at = _expect(der, at, tbs_end, 0xA3)
        if version != 2:
            raise _Decline
        sans = _extensions(der, inner, at)
    if at != tbs_end:
        raise _Decline
    return subject, issuer, sans, not_before, not_after


def _serial(der: bytes, at: int, end: int) -> int:
    """A positive serial (cryptography warns of any other)."""
    start, stop = _expect(der, at, end, _INTEGER)
    if not _integer(der, start, stop):
        raise _Decline
    return stop


def _integer(der: bytes, start: int, stop: int) -> int:
    """A non-negative INTEGER of at most 21 bytes, minimally encoded."""
    if not 0 < stop - start <= 21 or der[start] & 0x80:
        raise _Decline
    if stop - start > 1 and der[start] == 0 and not der[start + 1] & 0x80:
        raise _Decline
    return int.from_bytes(der[start:stop], "big")


def _algorithm(der: bytes, at: int, end: int, known: dict[bytes, str]) -> int:
    """An AlgorithmIdentifier from ``known`` with the parameters it takes."""
    start, stop = _expect(der, at, end, _SEQUENCE)
    oid_start, oid_stop = _expect(der, start, stop, _OID)
    kind = known.get(der[oid_start:oid_stop])
    rest = der[oid_stop:stop]
    if kind is None:
        raise _Decline
    if kind == _CURVE:
        curve_start, curve_stop = _expect(der, oid_stop, stop, _OID)
        _dotted(der[curve_start:curve_stop])
        if curve_stop != stop:
            raise _Decline
    elif not (rest == b"" or (kind == _NULL_OR_ABSENT and rest == b"\x05\x00")):
        raise _Decline
    return stop


def _dotted(oid: bytes) -> str:
    """The dotted text of an OID's DER content (short, minimally encoded arcs)."""
    if not 0 < len(oid) <= 32 or oid[-1] & 0x80:
        raise _Decline
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in oid:
        if fresh and byte == 0x80:
            raise _Decline  # a leading zero group
        value = value << 7 | byte & 0x7F
        fresh = not byte & 0x80
        if fresh:
            if value >= 1 << 32:
                raise _Decline
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return ".".join(map(str, (*head, *arcs[1:])))


def _name(der: bytes, at: int, end: int) -> tuple[str, int]:
    """A Name in RFC 4514 (last RDN first) and the offset after it."""
    start, stop = _expect(der, at, end, _SEQUENCE)
    parts: list[str] = []
    while start < stop:
        inner, start = _expect(der, start, stop, _SET)
        atv, after = _expect(der, inner, start, _SEQUENCE)
        if after != start:
            raise _Decline  # a multi-valued RDN (or an empty one)
        oid_start, oid_stop = _expect(der, atv, after, _OID)
        oid = _dotted(der[oid_start:oid_stop])
        tag, value_start, value_stop = _tlv(der, oid_stop, after)
        if value_stop != after or oid in _DECLINED_TYPES:
            raise _Decline
        value = _string(tag, der[value_start:value_stop])
        limits = _LENGTHS.get(oid)
        if limits is not None and not limits[0] <= len(value.encode()) <= limits[1]:
            raise _Decline
        parts.append(f"{_SHORT_NAMES.get(oid, oid)}={_escape(value)}")
    return ",".join(reversed(parts)), stop


def _string(tag: int, data: bytes) -> str:
    if tag == _PRINTABLE:
        if not _PRINTABLE_CHARS.issuperset(data):
            raise _Decline
        return data.decode("ascii")
    if tag == _IA5:
        if not data.isascii():
            raise _Decline
        return data.decode("ascii")
    if tag == _UTF8:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Decline from None
    raise _Decline


def _escape(value: str) -> str:
    if not value:
        return ""
    value = value.translate(_ESCAPES)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _time(der: bytes, at: int, end: int) -> tuple[dt.datetime, int]:
    """UTCTime (1950-2049) or GeneralizedTime, to the second, in UTC."""
    tag, start, stop = _tlv(der, at, end)
    text = der[start:stop]
    if tag == _UTC_TIME and len(text) == 13 and text[:12].isdigit():
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000
        digits = text[2:12]
    elif tag == _GENERALIZED_TIME and len(text) == 15 and text[:14].isdigit():
        year = int(text[:4])
        digits = text[4:14]
    else:
        raise _Decline
    if text[-1:] != b"Z" or year < 1:
        raise _Decline
    month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(0, 10, 2))
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC), stop
    except ValueError:
        raise _Decline from None


def _extensions(der: bytes, at: int, end: int) -> tuple[str, ...]:
    start, stop = _expect(der, at, end, _SEQUENCE)
    if stop != end or start == stop:
        raise _Decline
    seen: set[bytes] = set()
    sans: tuple[str, ...] = ()
    while start < stop:
        inner, start = _expect(der, start, stop, _SEQUENCE)
        oid_start, inner = _expect(der, inner, start, _OID)
        oid = der[oid_start:inner]
        if oid in seen:
            raise _Decline  # a duplicate extension
        seen.add(oid)
        tag, value_start, value_stop = _tlv(der, inner, start)
        if tag == _BOOLEAN:  # critical: TRUE (FALSE is the default, never written out)
            if der[value_start:value_stop] != b"\xff":
                raise _Decline
            tag, value_start, value_stop = _tlv(der, value_stop, start)
        if tag != _OCTET_STRING or value_stop != start:
            raise _Decline
        value = der[value_start:value_stop]
        if oid == _SAN:
            sans = _alt_names(value)
            continue
        check = _CHECKS.get(oid)
        if check is None:
            raise _Decline
        check(value)
    return sans


def _whole(value: bytes, tag: int) -> tuple[int, int]:
    """The content of the single element ``value`` holds."""
    start, stop = _expect(value, 0, len(value), tag)
    if stop != len(value):
        raise _Decline
    return start, stop


def _alt_names(value: bytes) -> tuple[str, ...]:
    """The DNS names and IP addresses of a subjectAltName, in order."""
    at, stop = _whole(value, _SEQUENCE)
    names: list[str] = []
    while at < stop:
        tag, data, at = _general_name(value, at, stop)
        if tag == 0x82:
            names.append(data.decode("ascii"))
        elif tag == 0x87:
            names.append(str(ipaddress.ip_address(data)))
    return tuple(names)


def _general_name(value: bytes, at: int, stop: int) -> tuple[int, bytes, int]:
    """An rfc822Name, dNSName or URI (IA5String: ASCII) or an iPAddress: its tag,
    its bytes and the offset after it."""
    tag, start, end = _tlv(value, at, stop)
    data = value[start:end]
    if tag in (0x81, 0x82, 0x86):
        if not data.isascii():
            raise _Decline
    elif tag != 0x87 or len(data) not in (4, 16):
        raise _Decline
    return tag, data, end


def _sequence_of(value: bytes, at: int, stop: int) -> list[tuple[int, int]]:
    """The contents of a non-empty SEQUENCE OF SEQUENCE spanning ``value[at:stop]``."""
    items: list[tuple[int, int]] = []
    while at < stop:
        start, at = _expect(value, at, stop, _SEQUENCE)
        items.append((start, at))
    if not items:
        raise _Decline
    return items


def _access_descriptions(value: bytes) -> None:
    """authorityInfoAccess: (method, location) pairs, the location a name as above."""
    for at, stop in _sequence_of(value, *_whole(value, _SEQUENCE)):
        start, at = _expect(value, at, stop, _OID)
        _dotted(value[start:at])
        if _general_name(value, at, stop)[2] != stop:
            raise _Decline


def _distribution_points(value: bytes) -> None:
    """cRLDistributionPoints: each point a fullName of names as above, nothing else."""
    for at, stop in _sequence_of(value, *_whole(value, _SEQUENCE)):
        start, end = _expect(value, at, stop, 0xA0)  # distributionPoint
        inner, names_end = _expect(value, start, end, 0xA0)  # fullName
        if end != stop or names_end != end or inner == names_end:
            raise _Decline
        while inner < names_end:
            inner = _general_name(value, inner, names_end)[2]


def _policies(value: bytes) -> None:
    """certificatePolicies: policy OIDs, each with CPS URIs (IA5String) or none."""
    for at, stop in _sequence_of(value, *_whole(value, _SEQUENCE)):
        start, at = _expect(value, at, stop, _OID)
        _dotted(value[start:at])
        if at == stop:
            continue
        start, end = _expect(value, at, stop, _SEQUENCE)
        if end != stop:
            raise _Decline
        for inner, inner_stop in _sequence_of(value, start, end):
            oid_start, oid_stop = _expect(value, inner, inner_stop, _OID)
            uri_start, uri_stop = _expect(value, oid_stop, inner_stop, _IA5)
            if value[oid_start:oid_stop] != _CPS or uri_stop != inner_stop:
                raise _Decline
            if not value[uri_start:uri_stop].isascii():
                raise _Decline


def _timestamps(data: bytes) -> None:
    """A SignedCertificateTimestampList (RFC 6962 section 3.3) of v1 SCTs with the
    hash and signature algorithms cryptography knows, to the last byte."""
    scts, rest = _prefixed(data)
    if rest or not scts:
        raise _Decline
    while scts:
        sct, scts = _prefixed(scts)
        if len(sct) < 43 or sct[0] != 0:  # version v1, log id, timestamp
            raise _Decline
        _, sct = _prefixed(sct[41:])  # extensions
        if len(sct) < 2 or not 1 <= sct[0] <= 6 or not 1 <= sct[1] <= 3:
            raise _Decline
        _, sct = _prefixed(sct[2:])  # signature
        if sct:
            raise _Decline


def _prefixed(data: bytes) -> tuple[bytes, bytes]:
    """A TLS opaque<0..2^16-1>: its bytes and what follows."""
    if len(data) < 2:
        raise _Decline
    end = 2 + int.from_bytes(data[:2], "big")
    if end > len(data):
        raise _Decline
    return data[2:end], data[end:]


def _key_identifier(value: bytes) -> None:
    _whole(value, _OCTET_STRING)


def _authority_key_identifier(value: bytes) -> None:
    """keyIdentifier only (cryptography refuses an issuer without a serial)."""
    start, stop = _whole(value, _SEQUENCE)
    if _expect(value, start, stop, 0x80)[1] != stop:
        raise _Decline


def _embedded_timestamps(value: bytes) -> None:
    start, stop = _whole(value, _OCTET_STRING)
    _timestamps(value[start:stop])


def _basic_constraints(value: bytes) -> None:
    """cA TRUE with an optional pathLenConstraint, or neither (cA FALSE)."""
    at, stop = _whole(value, _SEQUENCE)
    if at == stop:
        return
    start, at = _expect(value, at, stop, _BOOLEAN)
    if value[start:at] != b"\xff":
        raise _Decline
    if at < stop:
        start, at = _expect(value, at, stop, _INTEGER)
        if at - start > 4:
            raise _Decline
        _integer(value, start, at)
    if at != stop:
        raise _Decline


def _key_usage(value: bytes) -> None:
    """A BIT STRING of one or two bytes; encipherOnly and decipherOnly only
    with keyAgreement (cryptography refuses the rest)."""
    start, stop = _whole(value, _BIT_STRING)
    bits = value[start + 1 : stop]
    if not 1 <= len(bits) <= 2 or value[start] > 7:
        raise _Decline
    if bits[-1] & ((1 << value[start]) - 1):
        raise _Decline  # the unused bits must be zero
    key_agreement = bits[0] & 0x08
    encipher_only = bits[0] & 0x01
    decipher_only = len(bits) == 2 and bits[1] & 0x80
    if (encipher_only or decipher_only) and not key_agreement:
        raise _Decline


def _purposes(value: bytes) -> None:
    at, stop = _whole(value, _SEQUENCE)
    if at == stop:
        raise _Decline
    while at < stop:
        start, at = _expect(value, at, stop, _OID)
        _dotted(value[start:at])


# How each extension besides subjectAltName is checked: those a server
# certificate of a public CA carries; any other declines.
_CHECKS: dict[bytes, Callable[[bytes], None]] = {
    _BASIC: _basic_constraints,
    _KEY_USAGE: _key_usage,
    _EXT_KEY_USAGE: _purposes,
    _SKI: _key_identifier,
    _AKI: _authority_key_identifier,
    _AIA: _access_descriptions,
    _CRL_POINTS: _distribution_points,
    _POLICIES: _policies,
    _SCTS: _embedded_timestamps,
}
