"""The dashboard's questions, answered by the database.

A collector holds months of 15-minute measurements from many vantages
(100 vantages x 7 endpoints x 90 days is ~6 million rows), so nothing here
reads rows one by one:

* :func:`latest` finds each vantage's newest measurement of each domain with
  one index probe per (vantage, domain) pair, the domains themselves by a
  skip scan (one probe per distinct domain), both on indexes of migration 0003;
* :func:`status_series` counts measurements per domain, time bucket and
  status in SQL (GROUP BY), so the browser receives at most a few thousand
  counts whatever the period;
* :func:`events` is the reported timeline of a country and platform.

Everything returned is plain data; the web layer (collectors.dashboard)
turns it into JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Select, cast, func, literal, select, true
from sqlalchemy.sql.elements import ColumnElement

from probe.verdict import Status
from storage.models import measurements, vantages
from storage.records import TimelineEvent, Vantage
from storage.store import Store
from storage.summary import LIST_SEPARATOR
from storage.timeline import ALL_PLATFORMS, event_moment

m = measurements.c
v = vantages.c
STATUSES = tuple(s.value for s in Status)


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest measurement of one domain from one vantage."""

    measurement_id: str
    domain: str
    platform: str | None
    started_at: dt.datetime
    status: str
    blocking: tuple[str, ...]
    trigger: str | None


@dataclass(frozen=True, slots=True)
class VantageLatest:
    """A vantage (as last described) with its newest measurement per domain."""

    vantage: Vantage
    last_seen: dt.datetime
    latest: tuple[Latest, ...]


@dataclass(frozen=True, slots=True)
class Bucket:
    """Counts of measurements by status in one time bucket starting at ``start``."""

    start: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)


def latest(
    store: Store, platform: str | None = None, order: Sequence[str] = ()
) -> list[VantageLatest]:
    """Every vantage's newest measurement per domain (of ``platform``, if given).

    Domains come in ``order`` first (a platform's own list, e.g. x.com first),
    then alphabetically; vantages by name.
    """
    domains = _domains(platform).cte("domains")
    newest = (
        select(measurements.c.id)
        .where(m.vantage_id == v.id, m.domain == domains.c.domain)
        .order_by(m.started_at.desc())
        .limit(1)
        .correlate(vantages, domains)
        .scalar_subquery()
    )
    pairs = select(newest).select_from(vantages).join(domains, true())
    inner = measurements.alias("newest")
    n = inner.c
    stmt = (
        select(
            n.id,
            n.domain,
            n.platform,
            n.started_at,
            n.status,
            n.blocking,
            n.trigger,
            v.name,
            v.country,
            v.asn,
            v.network,
            v.notes,
        )
        .select_from(inner.join(vantages, n.vantage_id == v.id))
        .where(n.id.in_(pairs))
    )
    if platform is not None:
        stmt = stmt.where(n.platform == platform)
    with store.database.reading() as conn:
        rows = conn.execute(stmt).all()
    return _by_vantage(rows, order)


def _domains(platform: str | None) -> Select[Any]:
    """Distinct domains (of ``platform``) by a recursive skip scan: one index probe each."""
    inner = measurements.alias("d")
    d = inner.c
    scope: ColumnElement[bool] = d.platform == platform if platform is not None else true()
    first = select(d.domain).where(scope).order_by(d.domain).limit(1).scalar_subquery()
    found = select(first.label("domain")).cte("found", recursive=True)
    following = (
        select(d.domain)
        .where(scope, d.domain > found.c.domain)
        .order_by(d.domain)
        .limit(1)
        .scalar_subquery()
    )
    found = found.union_all(select(following).where(found.c.domain.is_not(None)))
    return select(found.c.domain).where(found.c.domain.is_not(None))


def _by_vantage(rows: Iterable[Any], order: Sequence[str]) -> list[VantageLatest]:
    """Rows grouped by vantage name; a renamed description shows as its newest one."""
    rank = {domain: i for i, domain in enumerate(order)}
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        per_domain = best.setdefault(r.name, {})
        if r.domain not in per_domain or r.started_at > per_domain[r.domain].started_at:
            per_domain[r.domain] = r
    out = []
    for name in sorted(best):
        chosen = sorted(
            best[name].values(), key=lambda r: (rank.get(r.domain, len(rank)), r.domain)
        )
        newest = max(chosen, key=lambda r: r.started_at)
        out.append(
            VantageLatest(
                vantage=Vantage(name, newest.country, newest.asn, newest.network, newest.notes),
                last_seen=newest.started_at,
                latest=tuple(
                    Latest(
                        measurement_id=r.id,
                        domain=r.domain,
                        platform=r.platform,
                        started_at=r.started_at,
                        status=r.status,
                        blocking=tuple(r.blocking.split(LIST_SEPARATOR)) if r.blocking else (),
                        trigger=r.trigger,
                    )
                    for r in chosen
                ),
            )
        )
    return out


def status_series(
    store: Store,
    vantage: str,
    since: dt.datetime,
    until: dt.datetime,
    bucket: dt.timedelta,
    platform: str | None = None,
) -> dict[str, list[Bucket]]:
    """Per domain, the buckets from ``since`` that hold measurements, with counts per status."""
    seconds = max(1, int(bucket.total_seconds()))
    origin = int(since.timestamp())
    index = _bucket_index(store, origin, seconds)
    series: dict[str, dict[int, Bucket]] = {}
    with store.database.reading() as conn:
        # The ids first, as values: with a subquery SQLite's planner may skip-scan the
        # domain index over every vantage's rows instead of this vantage's time range.
        ids = list(conn.execute(select(v.id).where(v.name == vantage)).scalars())
        if not ids:
            return {}
        stmt = (
            select(m.domain, index.label("bucket"), m.status, func.count().label("n"))
            .select_from(measurements)
            .where(
                m.vantage_id.in_(ids),
                m.started_at >= since,
                m.started_at < until,
                m.platform == platform if platform is not None else true(),
            )
            .group_by(m.domain, index, m.status)
        )
        for r in conn.execute(stmt):
            buckets = series.setdefault(r.domain, {})
            number = int(r.bucket)
            if number not in buckets:
                start = dt.datetime.fromtimestamp(origin + number * seconds, dt.UTC)
                buckets[number] = Bucket(start)
            buckets[number].counts[r.status] = int(r.n)
    return {domain: [b[k] for k in sorted(b)] for domain, b in sorted(series.items())}


def _bucket_index(store: Store, origin: int, seconds: int) -> ColumnElement[Any]:
    """The bucket number of each measurement's start, computed by the database."""
    if store.database.is_sqlite:  # UTC text: strftime('%s') is its Unix time; integer division
        epoch = cast(func.strftime("%s", m.started_at), Integer)
        return (epoch - literal(origin)) // literal(seconds)
    since_origin = func.extract("epoch", m.started_at) - literal(origin)  # numeric
    return cast(func.floor(since_origin / literal(seconds)), Integer)


def events(
    store: Store,
    country: str | None,
    platform: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[TimelineEvent]:
    """Reported events of ``country`` for ``platform`` (and all platforms) in the period."""
    if not country:
        return []
    found = []
    for e in store.iter_events(country=country):
        if e.platform not in (platform, ALL_PLATFORMS):
            continue
        moment = event_moment(e)
        if (since is None or moment >= since) and (until is None or moment < until):
            found.append(e)
    return found


def find_vantage(store: Store, name: str) -> Vantage | None:
    """The vantage called ``name`` as most recently described, or None."""
    stmt = (
        select(v.name, v.country, v.asn, v.network, v.notes)
        .where(v.name == name)
        .order_by(v.id.desc())
        .limit(1)
    )
    with store.database.reading() as conn:
        found = conn.execute(stmt).first()
    return Vantage(*found) if found is not None else None
