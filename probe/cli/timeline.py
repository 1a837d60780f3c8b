"""Commands for the reported timeline, the report, and OONI imports.

``probe timeline list|add|import|export`` manage reported events,
``probe report`` reads measurements against them, and ``probe import ooni``
(added to the ``import`` group of :mod:`probe.cli.data`) brings in OONI
Web Connectivity history.  Everything heavy is imported inside the commands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from probe.cli.data import (
    Country,
    DbOption,
    Output,
    Platform,
    Since,
    Until,
    build_filter,
    check_output,
    open_store,
)
from probe.errors import UsageError

if TYPE_CHECKING:
    from storage.store import Store


def register(app: typer.Typer) -> None:
    timeline = typer.Typer(help="Reported events (blocks, restorations, court orders...).")
    timeline.command("list")(timeline_list)
    timeline.command("add")(timeline_add)
    timeline.command("import")(timeline_import)
    timeline.command("export")(timeline_export)
    app.add_typer(timeline, name="timeline", no_args_is_help=True)
    app.command("report")(report)
    for info in app.registered_groups:
        if info.name == "import" and info.typer_instance is not None:
            info.typer_instance.command("ooni")(import_ooni)
            break
    else:  # probe.cli.data not present: keep the command reachable
        group = typer.Typer(help="Import measurements.")
        group.command("ooni")(import_ooni)
        app.add_typer(group, name="import", no_args_is_help=True)


@contextmanager
def _store(db: str | None, *, write: bool = False) -> Iterator[Store]:
    """The store (read-only unless ``write``), with the built-in timeline
    loaded (idempotent) when writing."""
    from collectors.timeline import ensure_builtin_timeline

    with open_store(db, write=write) as store:
        if write:
            ensure_builtin_timeline(store)
        yield store


def _country(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) != 2 or not value.isalpha():
        raise UsageError(f"--country must be a two-letter ISO code, not {value!r}")
    return value.upper()


def _safe(text: str) -> str:
    """User/network text for a terminal: no control characters."""
    return "".join(c if c.isprintable() else " " for c in text)


# ------------------------------------------------------------------ timeline


def timeline_list(db: DbOption = None, country: Country = None, platform: Platform = None) -> None:
    """List reported events, oldest first (the built-in X/Pakistan timeline included)."""
    from storage.timeline import events_with_builtin

    with _store(db) as store:
        events = events_with_builtin(store, _country(country), platform)
    if not events:
        typer.echo("no events", err=True)
        return
    for e in events:
        when = e.date.isoformat() + (" " + e.time.strftime("%H:%MZ") if e.time else "")
        typer.echo(
            _safe(
                f"{when:<17} {e.country} {e.platform:<4} {e.kind:<10} {e.certainty:<6} "
                f"{e.title}  [{e.source}{'; ' + e.url if e.url else ''}]"
            )
        )


def timeline_add(
    date: Annotated[str, typer.Option(help="YYYY-MM-DD.")],
    country: Annotated[str, typer.Option(help="ISO 3166 code, e.g. PK.")],
    platform: Annotated[str, typer.Option(help="Platform, e.g. x; '*' for not platform-specific.")],
    kind: Annotated[
        str,
        typer.Option(
            help="block, partial, restore, shutdown, court, statement, disruption or other."
        ),
    ],
    title: Annotated[str, typer.Option(help="What happened, in one line.")],
    source: Annotated[str, typer.Option(help="Who reported it (outlet, document).")],
    time: Annotated[
        str | None, typer.Option(help="HH:MM in UTC, or with an offset: 22:00+05:00.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Link to the source.")] = None,
    certainty: Annotated[str, typer.Option(help="high, medium or low.")] = "medium",
    db: DbOption = None,
) -> None:
    """Add one reported event."""
    from collectors.timeline import event_from_record

    fields = {
        "date": date,
        "time": time,
        "country": country,
        "platform": platform,
        "kind": kind,
        "title": title,
        "source": source,
        "url": url,
        "certainty": certainty,
    }
    try:
        event = event_from_record(fields)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with _store(db, write=True) as store:
        added = store.add_events([event])
    typer.echo("added" if added else "already present (same date, country, platform, kind, title)")


def timeline_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv, .yaml or .yml file.")],
    db: DbOption = None,
) -> None:
    """Import events from a file: every row is checked, and any bad row imports nothing."""
    from collectors.timeline import TimelineFileError, load_file

    try:
        events = load_file(file)
    except TimelineFileError as exc:
        for error in exc.errors:
            typer.echo(_safe(f"{file}: {error}"), err=True)
        raise
    with _store(db, write=True) as store:
        added = store.add_events(events)
    typer.echo(f"{added} event(s) added, {len(events) - added} already present")


def timeline_export(
    output: Output = None,
    db: DbOption = None,
    country: Country = None,
    platform: Platform = None,
) -> None:
    """Write events as a CSV timeline file (the format `timeline import` reads)."""
    from collectors.timeline import to_csv
    from storage.timeline import events_with_builtin

    check_output(output)
    with _store(db) as store:
        text = to_csv(events_with_builtin(store, _country(country), platform))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None


# ------------------------------------------------------------------ report


def report(
    country: Country = None,
    platform: Platform = None,
    domain: Annotated[
        str | None, typer.Option(help="Only this domain (one series per vantage).")
    ] = None,
    since: Since = None,
    until: Until = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Also write a self-contained HTML report here."),
    ] = None,
    png: Annotated[
        Path | None, typer.Option(help="Also write the plot as a PNG here (a .png name).")
    ] = None,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print the vantage comparison as CSV instead (one row per vantage, "
            "endpoint and day; columns: docs/timeline-and-reports.md).",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Summarise measurements per vantage, endpoint, network and day, against the reported timeline;
    with several vantages, compare them (ISP x endpoint, status over time, flips)."""
    from storage.report import vantages as comparing
    from storage.report.summary import build_report, checks_from_rows
    from storage.report.text import render_text
    from storage.timeline import ReportedIndex, events_with_builtin

    if png is not None and png.suffix.lower() != ".png":
        raise UsageError(f"--png writes a PNG image: give a name ending in .png, not {png.name!r}")
    f = build_filter(since, until, domain, platform, None, country, None, None)
    check_output(output)
    check_output(png)
    with _store(db) as store:
        events = events_with_builtin(store, f.country, None)
        rows = store.iter_rows(f, oldest_first=True)
        checks = checks_from_rows(rows, ReportedIndex(events))
    result = build_report(
        checks,
        events,
        country=f.country,
        platform=platform,
        since=f.since,
        until=f.until,
        domain=f.domain,
    )
    comparison = comparing.compare(checks, result.events)
    if as_csv:
        comparing.write_csv(comparison, sys.stdout)
        return
    typer.echo(_safe_lines(render_text(result)), nl=False)
    if len(comparison.vantages) > 1:
        typer.echo("\n" + _safe_lines(comparing.render_text(comparison)), nl=False)
    if output is None and png is None:
        return
    from storage.report.html import render_html
    from storage.report.plot import render_png

    image = render_png(result)
    if png is not None:
        _write(png, image)
    if output is not None:
        several = comparison if len(comparison.vantages) > 1 else None
        _write(output, render_html(result, image, comparison=several).encode("utf-8"))


def _safe_lines(text: str) -> str:
    return "\n".join(_safe(line) for line in text.split("\n"))


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    typer.echo(f"wrote {path}", err=True)


# ------------------------------------------------------------------ OONI


def import_ooni(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="OONI JSON or JSONL (.gz ok); - for stdin."),
    ],
    country: Annotated[
        str | None, typer.Option(help="Only measurements from this country (probe_cc).")
    ] = None,
    domain: Annotated[list[str] | None, typer.Option(help="Only this domain (repeatable).")] = None,
    db: DbOption = None,
) -> None:
    """Import OONI Web Connectivity measurements, re-classified by our classifier."""
    from collectors.ooni import convert, read_documents

    for path in files:
        if str(path) != "-" and not path.is_file():
            raise UsageError(f"no such file: {path}")
    bad: list[str] = []
    skipped: list[str] = []
    documents = (doc for path in files for doc in read_documents(path))
    items = convert(
        documents,
        country=_country(country),
        domains=domain or (),
        bad=bad,
        skipped=skipped,
    )
    with open_store(db, write=True) as store:
        added, already = store.import_measurements(items)
    for problem in bad[:20]:
        typer.echo(_safe(f"skipped {problem}"), err=True)
    if added + already == 0 and not skipped:
        names = ", ".join(str(f) for f in files)
        raise UsageError(
            f"nothing importable in {names}: {len(bad)} unreadable, no OONI measurement"
        )
    typer.echo(
        f"{added} measurement(s) imported, {already} already present, "
        f"{len(skipped)} not web_connectivity or not matching, {len(bad)} unreadable"
    )
