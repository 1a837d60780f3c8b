"""Commands over stored measurements: list, show, re-classify, export, import, db.

Storage (and SQLAlchemy) is imported inside each command so that
``probe --help`` stays fast.  Database failures surface as StorageError
(exit 4), bad filters as UsageError (exit 2), both as one line.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from probe.errors import UsageError
from probe.terminal import json_text, printable

if TYPE_CHECKING:
    from storage.records import MeasurementFilter, StoredMeasurement
    from storage.store import Store

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="PROBE_DB",
        metavar="URL",
        help="Database: SQLite path or SQLAlchemy URL (postgresql://...). "
        "Default: $PROBE_DB, else the SQLite file in the data directory.",
    ),
]
VantageOption = Annotated[
    str | None,
    typer.Option(
        "--vantage",
        envvar="PROBE_VANTAGE",
        metavar="NAME",
        help="Name of this vantage point, stored with every result (default: a neutral "
        "generated name, kept beside the database; never the host name).",
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        envvar="REACHPROBE_CONFIG",
        metavar="FILE",
        help="Daemon config: stores with its vantage (name, country, ASN) and database.",
    ),
]
Since = Annotated[
    str | None,
    typer.Option(help="Started at or after this time (YYYY-MM-DD or RFC 3339, UTC)."),
]
Until = Annotated[
    str | None,
    typer.Option(help="Started before this time; a bare date includes that whole day."),
]
Domain = Annotated[str | None, typer.Option(help="Only this domain.")]
Platform = Annotated[str | None, typer.Option(help="Only this platform (e.g. x).")]
VantageName = Annotated[str | None, typer.Option("--vantage", help="Only this vantage point.")]
Country = Annotated[str | None, typer.Option(help="Only vantage points in this country (ISO 2).")]
VerdictOption = Annotated[
    str | None,
    typer.Option(
        "--verdict", help="Only this verdict: accessible, blocked, down, offline, inconclusive."
    ),
]
Limit = Annotated[
    int | None, typer.Option(min=1, help="Only the newest N measurements (as `measurements`).")
]
Jobs = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        help="Processes for a large SQLite export (default: one per CPU, at most 4; "
        "1: a single process).",
    ),
]
Output = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
]


def register(app: typer.Typer) -> None:
    app.command("measurements")(measurements)
    app.command("show")(show)
    app.command("reclassify")(reclassify)
    export = typer.Typer(help="Export measurements (CSV for spreadsheets, JSONL lossless).")
    export.command("csv")(export_csv)
    export.command("jsonl")(export_jsonl)
    app.add_typer(export, name="export", no_args_is_help=True)
    imports = typer.Typer(help="Import measurements exported by `probe export jsonl`.")
    imports.command("jsonl")(import_jsonl)
    app.add_typer(imports, name="import", no_args_is_help=True)
    database = typer.Typer(help="Inspect or upgrade the database schema.")
    database.command("upgrade")(db_upgrade)
    database.command("current")(db_current)
    app.add_typer(database, name="db", no_args_is_help=True)


# ------------------------------------------------------------------ commands


def measurements(
    db: DbOption = None,
    since: Since = None,
    until: Until = None,
    domain: Domain = None,
    platform: Platform = None,
    vantage: VantageName = None,
    country: Country = None,
    verdict: VerdictOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List stored measurements, newest first."""
    from probe.observations import to_dict

    f = build_filter(since, until, domain, platform, vantage, country, verdict, limit)
    with open_store(db) as store:
        rows = list(store.iter_rows(f))
    if as_json:
        typer.echo(json_text([to_dict(r) for r in rows], indent=2))
        return
    if not rows:
        typer.echo("no measurements match", err=True)
        return
    table = [
        (
            r.id[:8],
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.vantage.name,
            r.domain,
            r.verdict,
            ",".join(r.blocking) or "-",
            r.trigger or "-",
            r.first_failure or "-",
        )
        for r in rows
    ]
    header = (
        "ID",
        "STARTED (UTC)",
        "VANTAGE",
        "DOMAIN",
        "VERDICT",
        "BLOCKING",
        "TRIGGER",
        "FAILURE",
    )
    _print_table(header, table)


def show(
    measurement_id: Annotated[
        str, typer.Argument(metavar="ID", help="UUID or its first 8+ characters.")
    ],
    db: DbOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full record (observations included) as JSON.")
    ] = False,
) -> None:
    """Show one measurement in full."""
    from storage.jsonl import encode

    with open_store(db) as store:
        item = store.get(measurement_id)
    if item is None:
        raise UsageError(f"no measurement with id {measurement_id}")
    if as_json:
        typer.echo(json_text(encode(item), indent=2))
    else:
        typer.echo("\n".join(describe(item)))


def reclassify(
    db: DbOption = None,
    since: Since = None,
    until: Until = None,
    domain: Domain = None,
    platform: Platform = None,
    vantage: VantageName = None,
    country: Country = None,
    verdict: VerdictOption = None,
    limit: Limit = None,
) -> None:
    """Classify stored observations again with this release's classifier."""
    from probe.classify import classify

    f = build_filter(since, until, domain, platform, vantage, country, verdict, limit)
    with open_store(db, write=True, existing=True) as store:
        examined, changed = store.reclassify(classify, store.newest(f))
    typer.echo(f"examined {examined} measurement(s); {changed} verdict(s) changed")


def export_csv(
    output: Output = None,
    db: DbOption = None,
    since: Since = None,
    until: Until = None,
    domain: Domain = None,
    platform: Platform = None,
    vantage: VantageName = None,
    country: Country = None,
    verdict: VerdictOption = None,
    limit: Limit = None,
    jobs: Jobs = None,
) -> None:
    """Export measurements as CSV, oldest first (columns: docs/data-format.md);
    with --limit N, the newest N."""
    from storage import export
    from storage.export_jobs import default_jobs
    from storage.timeline import register_csv_columns

    register_csv_columns()  # reported_status, last_event_date, last_event

    f = build_filter(since, until, domain, platform, vantage, country, verdict, limit)
    with open_store(db) as store, _output(output) as out:
        f = store.newest(f)
        count = export.export_csv(store, out, f, progress=_progress(), jobs=jobs or default_jobs())
    _done(count)


def export_jsonl(
    output: Output = None,
    db: DbOption = None,
    since: Since = None,
    until: Until = None,
    domain: Domain = None,
    platform: Platform = None,
    vantage: VantageName = None,
    country: Country = None,
    verdict: VerdictOption = None,
    limit: Limit = None,
) -> None:
    """Export measurements losslessly as JSON Lines, oldest first (re-importable);
    with --limit N, the newest N."""
    from storage.jsonl import write_jsonl

    f = build_filter(since, until, domain, platform, vantage, country, verdict, limit)
    with open_store(db) as store, _output(output) as out:
        f = store.newest(f)
        count = write_jsonl(store.iter_full(f, oldest_first=True), out, progress=_progress())
    _done(count)


def import_jsonl(
    file: Annotated[str, typer.Argument(metavar="FILE", help="JSONL file, or - for stdin.")],
    db: DbOption = None,
) -> None:
    """Import a JSONL export; measurements already stored (same UUID) are skipped."""
    from storage.jsonl import read_jsonl

    with open_store(db, write=True) as store, _input(file) as lines:
        added, present = store.import_measurements(read_jsonl(lines, file))
    typer.echo(f"imported {added} measurement(s) ({present} already present)")


def db_upgrade(db: DbOption = None) -> None:
    """Apply pending schema migrations (also done automatically on every open)."""
    from storage import migrate
    from storage.store import Store

    with Store.open(db, migrate=False) as store:
        announce_created(store)
        before = migrate.current(store.database)
        after = migrate.upgrade(store.database)
        change = "already up to date" if before == after else f"upgraded from {before or 'empty'}"
        typer.echo(f"{store.url}: schema {after} ({change})")


def db_current(db: DbOption = None) -> None:
    """Print the database URL and its schema revision."""
    from storage import migrate
    from storage.store import Store

    with Store.open(db, migrate=False, readonly=True) as store:
        current, head = migrate.current(store.database), migrate.head()
        state = "up to date" if current == head else f"this release's is {head}"
        typer.echo(f"{store.url}: schema {current or 'empty'} ({state})")


# ------------------------------------------------------------------ helpers


def build_filter(
    since: str | None,
    until: str | None,
    domain: str | None,
    platform: str | None,
    vantage: str | None,
    country: str | None,
    verdict: str | None,
    limit: int | None,
) -> MeasurementFilter:
    """A MeasurementFilter from command-line text; bad values are UsageErrors."""
    from probe.verdict import Status
    from storage.records import MeasurementFilter

    if verdict is not None and verdict not in {s.value for s in Status}:
        choices = ", ".join(s.value for s in Status)
        raise UsageError(f"--verdict must be one of {choices}, not {verdict!r}")
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise UsageError(f"--country must be a two-letter ISO code, not {country!r}")
    start = parse_when(since, "--since") if since else None
    end = parse_when(until, "--until", end_of_day=True) if until else None
    if start is not None and end is not None and start >= end:  # not "no measurements match"
        raise UsageError(f"--since {since} is not before --until {until}: nothing can match")
    return MeasurementFilter(
        since=start,
        until=end,
        domain=domain,
        platform=platform,
        vantage=vantage,
        country=country.upper() if country else None,
        verdict=verdict,
        limit=limit,
    )


def parse_when(text: str, option: str, *, end_of_day: bool = False) -> dt.datetime:
    """YYYY-MM-DD (midnight UTC; the next midnight with ``end_of_day``) or RFC 3339."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} must be YYYY-MM-DD or an RFC 3339 time like 2024-02-17T22:00:00Z, "
            f"not {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@contextmanager
def open_store(db: str | None, *, write: bool = False, existing: bool = False) -> Iterator[Store]:
    """The store: read-only unless ``write`` (a reading command creates nothing
    and works on a read-only copy); a database created for writing is announced.
    ``existing``: a command with nothing to do on a new database (a mistyped --db)
    creates none and says so."""
    from storage.store import Store

    with Store.open(db, readonly=not write, existing=existing) as store:
        announce_created(store)
        yield store


def announce_created(store: Store) -> None:
    if store.created:
        typer.echo(f"probe: created a new database {store.url}", err=True)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """stdout, or ``path`` written whole or not at all (via a temporary file).

    The temporary file is new and unguessable (O_EXCL, never through a link
    someone planted beside ``path``), and gets the mode the umask gives.
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    import tempfile  # not at start-up: it pulls in random and hashlib

    check_output(path)
    if path.is_symlink() and path.is_file():  # the file it points to gets the export
        path = path.resolve()
    if path.exists() and not path.is_file():  # /dev/stdout, a FIFO: written into, not replaced
        with _written(path) as out:
            yield out
        return
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    partial = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _written(path: Path) -> Iterator[TextIO]:
    """``path`` opened for writing as it is; what cannot be written is one line."""
    try:
        with open(path, "w", encoding="utf-8", newline="") as out:
            yield out
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def check_output(path: Path | None) -> None:
    """An output path naming a folder, or in a folder that does not exist, is a
    usage error said before any work (not after a long report was printed)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory (give a file name)")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")


@contextmanager
def _input(file: str) -> Iterator[TextIO]:
    if file == "-":
        yield sys.stdin
        return
    try:
        handle = open(file, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    with handle:
        yield handle


def _progress() -> Callable[[int], None] | None:
    if not sys.stderr.isatty():
        return None
    return lambda count: print(f"\r{count:,} rows exported", end="", file=sys.stderr, flush=True)


def _done(count: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{count:,} rows exported", file=sys.stderr)


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    cells = [header, *[tuple(printable(c) for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def describe(item: StoredMeasurement) -> list[str]:
    """A readable account of one measurement: verdict first, then what was seen."""
    from probe.observations import rfc3339

    row, verdict, obs = item.row, item.verdict, item.observations
    v = row.vantage
    where = ", ".join(x for x in (v.country, f"AS{v.asn}" if v.asn else None, v.network) if x)
    methods = ", ".join(str(m) for m in verdict.blocking)
    lines = [
        f"measurement  {row.id}",
        f"domain       {row.domain}  (input {row.input}; platform {row.platform or '-'})",
        f"vantage      {v.name}" + (f" ({where})" if where else ""),
        f"started      {rfc3339(row.started_at)}, took {row.duration_ms:.0f} ms",
        f"verdict      {verdict.status}"
        + (f": {methods}" if methods else "")
        + (f" (trigger: {verdict.trigger})" if verdict.trigger else ""),
    ]
    if verdict.blockpage:
        lines.append(f"blockpage    {verdict.blockpage}")
    if verdict.https_ok is not None:
        lines.append(f"https ok     {'yes' if verdict.https_ok else 'no'}")
    lines += [f"reason       {reason}" for reason in verdict.reasons]
    lines += [f"note         {note}" for note in verdict.notes]
    lines.append(f"resolver     {obs.settings.resolver}")
    for q in obs.dns:
        answer = ", ".join(q.addresses) or str(q.failure or "no address")
        extra = f" ({len(q.replies)} replies)" if len(q.replies) > 1 else ""
        lines.append(f"dns          {q.origin} {q.qtype} {q.qname}: {answer}{extra}")
    for e in obs.endpoints:
        steps = [("tcp", e.tcp), ("tls", e.tls), ("tls control sni", e.tls_control_sni)]
        parts = [
            f"{name} {o.failure or 'ok'} {o.elapsed_ms:.0f} ms"
            for name, o in steps
            if o is not None
        ]
        https = [("http", e.http), ("http control sni", e.http_control_sni)]
        https.append(("http control host", e.http_control_host))
        for name, h in https:
            if h is not None:
                seen = f"{h.status}" + (f" {h.title!r}" if h.title else "") if h.status else ""
                parts.append(f"{name} {h.failure or seen or 'ok'}")
        if e.skipped:
            parts.append(f"skipped: {e.skipped}")
        lines.append(f"endpoint     {e.address} port {e.port}: " + "; ".join(parts))
    for c in obs.controls:
        lines.append(f"control      {c.domain}: {'reachable' if c.reachable else 'unreachable'}")
    lines.append(
        f"versions     probe {row.probe_version or '-'}, classifier {verdict.classifier_version}"
    )
    return [printable(line) for line in lines]
