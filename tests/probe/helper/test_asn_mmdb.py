"""The MaxMind-format reader on a real (tiny) .mmdb, written here from the
format's specification: one IPv4 /24 mapped to an AS number."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from probe.helper.asn import open_database


def _uint(kind: int, value: int) -> bytes:
    data = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return bytes([kind << 5 | len(data)]) + data


def _ext_uint(kind: int, value: int) -> bytes:  # extended types (uint64, array...)
    data = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return bytes([len(data), kind - 7]) + data


def _text(value: str) -> bytes:
    raw = value.encode()
    assert len(raw) < 29 + 256
    if len(raw) < 29:
        return bytes([2 << 5 | len(raw)]) + raw
    return bytes([2 << 5 | 29, len(raw) - 29]) + raw  # the one-byte size extension


def _map(pairs: dict[str, bytes]) -> bytes:
    return bytes([7 << 5 | len(pairs)]) + b"".join(_text(k) + v for k, v in pairs.items())


def write_mmdb(path: Path, network: str, asn: int) -> None:
    net = ipaddress.ip_network(network)
    bits = format(int(net.network_address), "032b")[: net.prefixlen]
    count = len(bits)
    data_pointer = count + 16  # the first byte of the data section
    tree = b""
    for depth, bit in enumerate(bits):
        onward = depth + 1 if depth + 1 < count else data_pointer
        left, right = (onward, count) if bit == "0" else (count, onward)
        tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
    data = _map({"autonomous_system_number": _uint(6, asn),
                 "autonomous_system_organization": _text("LAB-AS")})  # fmt: skip
    metadata = _map(
        {
            "binary_format_major_version": _uint(5, 2),
            "binary_format_minor_version": _uint(5, 0),
            "build_epoch": _ext_uint(9, 1_700_000_000),
            "database_type": _text("GeoLite2-ASN"),
            "description": _map({"en": _text("test")}),
            "ip_version": _uint(5, 4),
            "languages": bytes([1, 11 - 7]) + _text("en"),
            "node_count": _uint(6, count),
            "record_size": _uint(5, 24),
        }
    )
    path.write_bytes(tree + b"\x00" * 16 + data + b"\xab\xcd\xefMaxMind.com" + metadata)


def test_reads_a_maxmind_asn_file(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    write_mmdb(path, "1.0.0.0/24", 13335)
    db = open_database(str(path))
    assert db.lookup("1.0.0.7") == 13335
    assert db.lookup("1.0.1.7") is None
    assert db.lookup("2606:4700::1") is None  # an IPv4-only file: no answer, no error
