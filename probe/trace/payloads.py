"""The bytes a trace sends on an established connection, whole or split.

The ClientHello is the one Python's ssl module would send (a real one, SNI
included), taken from a memory BIO, so the censor sees what ``probe check``
sends. Splits cut inside the server name, so a filter that matches the name
in each packet (or each TLS record) separately cannot see it whole.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Hello:
    """A ClientHello record and the TLS state that produced it (to finish the handshake)."""

    data: bytes
    sslobj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def client_hello(sni: str, ca_bundle: str | None = None) -> Hello:
    context = ssl.create_default_context(cafile=ca_bundle)
    context.set_alpn_protocols(["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    sslobj = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return Hello(outgoing.read(), sslobj, incoming, outgoing)


def http_request(host: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: reachprobe-trace\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def name_offset(data: bytes, name: str) -> int | None:
    """Where the middle of ``name`` lies in ``data`` (the cut point), or None."""
    start = data.find(name.encode("ascii"))
    return None if start < 0 else start + max(1, len(name) // 2)


def split_segments(data: bytes, name: str) -> tuple[bytes, ...]:
    """Two TCP segments, the cut inside the server name (or the middle, if absent)."""
    cut = name_offset(data, name) or len(data) // 2
    return (data[:cut], data[cut:])


def split_records(record: bytes, name: str) -> bytes:
    """One TLS handshake record re-framed as two records, the cut inside the server name.

    TLS allows a handshake message to span records (RFC 8446 §5.1); a censor that
    matches records one at a time does not see the name whole.
    """
    if len(record) < 6 or record[0] != 0x16:
        return record
    header, body = record[:3], record[5:]
    cut = (name_offset(record, name) or len(record) // 2) - 5
    cut = min(max(cut, 1), len(body) - 1)
    parts = (body[:cut], body[cut:])
    return b"".join(header + len(p).to_bytes(2, "big") + p for p in parts)
