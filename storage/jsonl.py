"""JSON Lines export and import: the lossless interchange format.

One measurement per line, ``{"schema": "probe.measurement/1", "id",
"vantage", "verdict", "observations"}``, where the verdict and observations
use probe.observations' codec.  Summary columns are not exported: they are
derived again from the observations on import, so an import never trusts
them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from probe.config import vantage_name
from probe.errors import UsageError
from probe.observations import DomainObservations, from_dict, to_dict
from probe.verdict import Verdict
from storage.records import StoredMeasurement, Vantage
from storage.summary import measurement_row

SCHEMA = "probe.measurement/1"
PROGRESS_EVERY = 10_000


def encode(item: StoredMeasurement) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": item.row.id,
        "vantage": to_dict(item.row.vantage),
        "verdict": to_dict(item.verdict),
        "observations": to_dict(item.observations),
    }


def write_jsonl(
    items: Iterable[StoredMeasurement],
    out: TextIO,
    progress: Callable[[int], None] | None = None,
) -> int:
    count = 0
    for item in items:
        out.write(json.dumps(encode(item), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    return count


def decode(data: Any) -> StoredMeasurement:
    """Rebuild a measurement from one parsed line; ValueError says what is wrong."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f'not a measurement record (expected "schema": "{SCHEMA}")')
    try:
        measurement_id = str(uuid.UUID(str(data["id"])))
        vantage = from_dict(Vantage, data["vantage"])
        verdict = from_dict(Verdict, data["verdict"])
        obs = from_dict(DomainObservations, data["observations"])
    except KeyError as exc:
        raise ValueError(f"missing field {exc}") from None
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"malformed record ({exc})") from None
    try:  # as a config or --vantage must: every table, CSV row and log line shows it
        vantage_name(vantage.name)
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"vantage name {vantage.name!r}: {exc}") from None
    return StoredMeasurement(measurement_row(measurement_id, vantage, obs, verdict), obs, verdict)


def read_jsonl(lines: Iterable[str], source: str = "<input>") -> Iterator[StoredMeasurement]:
    """Measurements from JSON Lines; a bad line is a UsageError naming it."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source}:{number}: invalid JSON ({exc.msg})") from None
        try:
            yield decode(data)
        except ValueError as exc:
            raise UsageError(f"{source}:{number}: {exc}") from None
