"""Reading and writing timeline files (CSV or YAML), all rows or none.

A timeline file is typed by hand from news reports, so mistakes are expected:
every row is checked and every bad row is reported with its number and
field, and a file with any bad row imports nothing (a half-imported timeline
would silently change reported statuses).  Columns are those of
``collectors/data/timeline-pk-x.csv``; see docs/timeline-and-reports.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import UsageError
from storage.records import CERTAINTIES, EVENT_KINDS, TimelineEvent

if TYPE_CHECKING:
    from storage.store import Store

COLUMNS = ("date", "time", "country", "platform", "kind", "title", "source", "url", "certainty")
REQUIRED = ("date", "country", "platform", "kind", "title", "source")
BUILTIN = "timeline-pk-x.csv"
PLATFORM_ALIASES = {"twitter": "x", "x/twitter": "x", "all": "*"}
MAX_TEXT = 1000

_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE)
_PLATFORM = re.compile(r"^(\*|[a-z0-9][a-z0-9._-]{0,39})$")


@dataclass(frozen=True)
class RowError:
    row: str  # "line 4" (CSV) or "event 3" (YAML)
    message: str

    def __str__(self) -> str:
        return f"{self.row}: {self.message}"


class TimelineFileError(UsageError):
    """A timeline file with bad rows; ``errors`` lists every one of them."""

    def __init__(self, source: str, errors: Sequence[RowError], *, header: bool = False) -> None:
        self.errors = tuple(errors)
        what = "problem(s) in the header row" if header else "bad row(s)"
        super().__init__(
            f"{source}: {len(self.errors)} {what}, nothing imported; first: {self.errors[0]}"
        )


# ------------------------------------------------------------------ parsing


def load_file(path: Path) -> list[TimelineEvent]:
    """Parse a ``.csv``, ``.yaml`` or ``.yml`` timeline file; raise on any bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read timeline file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read timeline file {path}: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        return parse_yaml(text, str(path))
    if path.suffix.lower() == ".csv":
        return parse_csv(text, str(path))
    raise UsageError(f"{path}: timeline files must end in .csv, .yaml or .yml")


def parse_csv(text: str, source: str = "<csv>") -> list[TimelineEvent]:
    reader = csv.DictReader(io.StringIO(text), restkey="\0extra")
    header = [h.strip().lower() for h in reader.fieldnames or ()]
    if not header:
        raise TimelineFileError(source, [RowError("line 1", "empty file: no header row")])
    problems = _header_problems(header)
    if problems:
        raise TimelineFileError(source, [RowError("line 1", p) for p in problems], header=True)
    reader.fieldnames = header
    records: list[tuple[str, Mapping[str, Any]]] = []
    for record in reader:
        label = f"line {reader.line_num}"
        if "\0extra" in record:
            records.append((label, {"\0extra": True}))
        else:
            records.append((label, record))
    return _validate_all(records, source)


def parse_yaml(text: str, source: str = "<yaml>") -> list[TimelineEvent]:
    import yaml  # type: ignore[import-untyped]

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML ({_one_line(exc)})") from exc
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if not isinstance(data, list):
        raise UsageError(f"{source}: expected a list of events (or a mapping with 'events:')")
    records: list[tuple[str, Mapping[str, Any]]] = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            records.append((f"event {i}", {"\0notmap": True}))
            continue
        records.append((f"event {i}", {str(k).strip().lower(): v for k, v in item.items()}))
    if not records:
        raise UsageError(f"{source}: no events")
    return _validate_all(records, source)


def _header_problems(header: Sequence[str]) -> list[str]:
    problems = [f"missing column {c!r}" for c in REQUIRED if c not in header]
    problems += [f"unknown column {c!r}" for c in header if c not in COLUMNS]
    dupes = sorted({c for c in header if header.count(c) > 1})
    problems += [f"duplicate column {c!r}" for c in dupes]
    return problems


def _validate_all(
    records: Iterable[tuple[str, Mapping[str, Any]]], source: str
) -> list[TimelineEvent]:
    events: list[TimelineEvent] = []
    errors: list[RowError] = []
    seen: dict[tuple[object, ...], str] = {}
    for label, record in records:
        try:
            event = event_from_record(record)
        except ValueError as exc:
            errors.append(RowError(label, str(exc)))
            continue
        key = unique_key(event)
        if key in seen:
            errors.append(RowError(label, f"duplicate of {seen[key]}"))
            continue
        seen[key] = label
        events.append(event)
    if errors:
        raise TimelineFileError(source, errors)
    return events


def unique_key(event: TimelineEvent) -> tuple[object, ...]:
    """What makes two events the same (the database's unique constraint)."""
    return (event.date, event.country, event.platform, event.kind, event.title)


def event_from_record(record: Mapping[str, Any]) -> TimelineEvent:
    """One validated event from field: value text; raises ValueError naming the problem."""
    if "\0extra" in record:
        raise ValueError("more cells than columns (an unquoted comma?)")
    if "\0notmap" in record:
        raise ValueError("not a mapping of field: value")
    unknown = sorted(k for k in record if k not in COLUMNS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    missing = [c for c in REQUIRED if _text(record.get(c)) == ""]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    day, time = _when(record.get("date"), record.get("time"))
    country = _text(record["country"]).upper()
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise ValueError(f"country must be a 2-letter ISO 3166 code, not {country!r}")
    platform = _text(record["platform"]).lower()
    platform = PLATFORM_ALIASES.get(platform, platform)
    if not _PLATFORM.match(platform):
        raise ValueError(f"bad platform {platform!r} (lower-case name like 'x', or '*')")
    kind = _text(record["kind"]).lower()
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(EVENT_KINDS)})")
    certainty = _text(record.get("certainty")).lower() or "medium"
    if certainty not in CERTAINTIES:
        raise ValueError(f"unknown certainty {certainty!r} (one of {', '.join(CERTAINTIES)})")
    url = _text(record.get("url")) or None
    if url is not None and not re.match(r"^https?://[^\s/]+", url, re.IGNORECASE):
        raise ValueError(f"url must start with http:// or https://, not {url[:60]!r}")
    title, src = _text(record["title"]), _text(record["source"])
    for name, value in (("title", title), ("source", src), ("url", url or "")):
        if len(value) > MAX_TEXT:
            raise ValueError(f"{name} longer than {MAX_TEXT} characters")
    return TimelineEvent(
        date=day,
        country=country,
        platform=platform,
        kind=kind,
        title=title,
        source=src,
        certainty=certainty,
        time=time,
        url=url,
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _when(day_value: Any, time_value: Any) -> tuple[dt.date, dt.time | None]:
    """Date and naive-UTC time; a time with an offset is converted (maybe moving the date)."""
    if isinstance(day_value, dt.datetime):
        raise ValueError("date must be a date (YYYY-MM-DD), put the time in 'time'")
    if isinstance(day_value, dt.date):
        day = day_value
    else:
        try:
            day = dt.date.fromisoformat(_text(day_value))
        except ValueError:
            raise ValueError(f"bad date {_text(day_value)!r} (want YYYY-MM-DD)") from None
    if isinstance(time_value, int) and not isinstance(time_value, bool):
        raise ValueError("time must be quoted text such as '22:00' (YAML reads 22:00 as a number)")
    text = _text(time_value)
    if not text:
        return day, None
    m = _TIME.match(text)
    if not m or int(m[1]) > 23 or int(m[2]) > 59 or int(m[3] or 0) > 59:
        raise ValueError(f"bad time {text!r} (want HH:MM, optionally with Z or +05:00)")
    offset = dt.timedelta(0)
    if m[4] and m[4].upper() != "Z":
        sign = -1 if m[4][0] == "-" else 1
        digits = m[4][1:].replace(":", "")
        offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset > dt.timedelta(hours=14) or offset < dt.timedelta(hours=-14):
            raise ValueError(f"bad UTC offset in {text!r}")
    local = dt.datetime.combine(day, dt.time(int(m[1]), int(m[2]), int(m[3] or 0)))
    utc = local - offset
    return utc.date(), utc.time()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# ------------------------------------------------------------------ writing


def to_csv(events: Iterable[TimelineEvent]) -> str:
    """The events as a CSV timeline file that :func:`parse_csv` reads back."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for e in events:
        writer.writerow(
            [
                e.date.isoformat(),
                e.time.strftime("%H:%M") + "Z" if e.time else "",
                e.country,
                e.platform,
                e.kind,
                e.title,
                e.source,
                e.url or "",
                e.certainty,
            ]
        )
    return out.getvalue()


# ------------------------------------------------------------------ built-in data


def builtin_events() -> list[TimelineEvent]:
    """The shipped timeline of X in Pakistan (collectors/data/timeline-pk-x.csv)."""
    text = resources.files("collectors").joinpath("data", BUILTIN).read_text(encoding="utf-8")
    return parse_csv(text, BUILTIN)


def ensure_builtin_timeline(store: Store) -> int:
    """Load the built-in events into ``store``; idempotent, returns how many were new."""
    return store.add_events(builtin_events())
