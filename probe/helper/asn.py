"""IP -> ASN for the helper's ``ip_info``, from a file the operator provides.

Two formats: a MaxMind-format ASN database (``.mmdb``, e.g. GeoLite2-ASN or
DB-IP's free ASN file, read with the maintained ``maxminddb`` reader) and
the public iptoasn.com TSV (``ip2asn-combined.tsv[.gz]``: range start,
range end, AS number, country, description), kept as sorted ranges and
searched by bisection.  Without a file ``ip_info`` is omitted, never faked.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
from pathlib import Path
from typing import Any, Protocol

from probe.errors import UsageError


class ASNDatabase(Protocol):
    def lookup(self, address: str) -> int | None: ...


def open_database(path: str) -> ASNDatabase:
    """Open ``path`` by its name (``.mmdb`` or TSV); raises UsageError in one line."""
    if not Path(path).is_file():
        raise UsageError(f"cannot read ASN database {path}: no such file")
    if path.endswith(".mmdb"):
        return _MaxMind(path)
    return RangeTable.from_tsv(path)


class _MaxMind:
    def __init__(self, path: str) -> None:
        import maxminddb

        try:
            self._reader: Any = maxminddb.open_database(path)
        except (OSError, ValueError) as exc:  # InvalidDatabaseError is a RuntimeError subclass
            raise UsageError(f"cannot read ASN database {path}: {exc}") from None
        except RuntimeError as exc:
            raise UsageError(f"cannot read ASN database {path}: {exc}") from None

    def lookup(self, address: str) -> int | None:
        try:
            record = self._reader.get(address)
        except ValueError:
            return None
        value = record.get("autonomous_system_number") if isinstance(record, dict) else None
        return value if isinstance(value, int) and value > 0 else None


class RangeTable:
    """Sorted, non-overlapping address ranges with their AS numbers (0 = not routed)."""

    def __init__(self, ranges: list[tuple[int, int, int, int]]) -> None:
        self._ranges = sorted(ranges)  # (version, start, end, asn)
        self._starts = [(v, s) for v, s, _, _ in self._ranges]

    @classmethod
    def from_tsv(cls, path: str) -> RangeTable:
        opener: Any = gzip.open if path.endswith(".gz") else open
        ranges: list[tuple[int, int, int, int]] = []
        try:
            with opener(path, "rt", encoding="utf-8") as stream:
                for number, line in enumerate(stream, start=1):
                    if not line.strip() or line.startswith("#"):
                        continue
                    ranges.append(_range(line, path, number))
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise UsageError(f"cannot read ASN database {path}: {exc}") from None
        if not ranges:
            raise UsageError(f"cannot read ASN database {path}: no ranges in it")
        return cls(ranges)

    def lookup(self, address: str) -> int | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        key = (ip.version, int(ip))
        index = bisect.bisect_right(self._starts, key) - 1
        if index < 0:
            return None
        version, _, end, asn = self._ranges[index]
        return asn if version == ip.version and int(ip) <= end and asn > 0 else None


def _range(line: str, path: str, number: int) -> tuple[int, int, int, int]:
    fields = line.rstrip("\n").split("\t")
    try:
        start, end = ipaddress.ip_address(fields[0]), ipaddress.ip_address(fields[1])
        asn = int(fields[2])
    except (IndexError, ValueError):
        raise UsageError(
            f"cannot read ASN database {path}:{number}: not 'start<TAB>end<TAB>asn...'"
        ) from None
    if start.version != end.version or int(end) < int(start):
        raise UsageError(f"cannot read ASN database {path}:{number}: bad range")
    return start.version, int(start), int(end), asn
