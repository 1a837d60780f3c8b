"""The plain records that storage hands out and takes in.

Kept free of SQLAlchemy so that callers (CLI, collectors, timeline) can type
against them without paying for the ORM import.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from probe.observations import DomainObservations
from probe.verdict import Verdict


@dataclass(frozen=True, slots=True)
class Vantage:
    """Where a measurement was taken from, as described by its operator."""

    name: str
    country: str | None = None  # ISO 3166-1 alpha-2
    asn: int | None = None
    network: str | None = None  # e.g. "PTCL"
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class MeasurementFilter:
    """Which measurements a query selects; None means "any".

    ``since`` is inclusive and ``until`` exclusive, both compared with the
    measurement's start time.
    """

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    domain: str | None = None
    platform: str | None = None
    vantage: str | None = None  # vantage name
    country: str | None = None  # vantage country
    verdict: str | None = None  # a Status value
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class MeasurementRow:
    """One measurement's verdict and summary: a CSV row, without the observations.

    The summary fields are derived from the observations when saved (see
    :mod:`storage.summary` and docs/data-format.md); they exist so listings
    and exports never have to decode the full observation JSON.
    """

    id: str
    vantage: Vantage
    domain: str
    input: str
    platform: str | None
    started_at: dt.datetime  # timezone-aware UTC
    duration_ms: float
    verdict: str
    blocking: tuple[str, ...]
    trigger: str | None
    resolver: str
    probe_version: str
    classifier_version: str
    blockpage: str | None = None
    dns_answers: tuple[str, ...] = ()
    control_answers: tuple[str, ...] = ()
    first_failure: str | None = None
    tls_failures: tuple[str, ...] = ()
    http_status: int | None = None
    http_failures: tuple[str, ...] = ()
    http_title: str | None = None
    tcp_ms: float | None = None
    tls_ms: float | None = None
    http_ms: float | None = None
    helper_saw_site: str | None = None  # "true"/"false": the control helper's view; None: none


@dataclass(frozen=True, slots=True)
class StoredMeasurement:
    """A measurement in full: enough to audit it and to classify it again."""

    row: MeasurementRow
    observations: DomainObservations
    verdict: Verdict


ALL_MEASUREMENTS = MeasurementFilter()


EVENT_KINDS = (
    "block",
    "partial",
    "restore",
    "shutdown",
    "court",
    "statement",
    "disruption",
    "other",
)
CERTAINTIES = ("high", "medium", "low")


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A reported event (a block, a court order...) that measurements can be read against.

    Events are unique on (date, country, platform, kind, title), so loading
    the same source twice adds nothing.
    """

    date: dt.date
    country: str  # ISO 3166-1 alpha-2
    platform: str
    kind: str  # one of EVENT_KINDS
    title: str
    source: str
    certainty: str = "medium"  # one of CERTAINTIES
    time: dt.time | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r} (one of {', '.join(EVENT_KINDS)})")
        if self.certainty not in CERTAINTIES:
            raise ValueError(
                f"unknown certainty {self.certainty!r} (one of {', '.join(CERTAINTIES)})"
            )
        if len(self.country) != 2 or not self.country.isalpha() or not self.country.isupper():
            raise ValueError(f"country must be an upper-case ISO 3166 code, not {self.country!r}")
