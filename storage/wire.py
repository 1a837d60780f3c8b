"""The collector's fast path for one uploaded line: decoded in C, as strictly as storage.schema.

:mod:`storage.schema` decodes a parsed record in Python (about 1 ms per
measurement with ``json.loads``), which capped a collector at a few hundred
measurements per CPU-second.  Here msgspec decodes the line's bytes straight
into :class:`msgspec.Struct` mirrors of the observation dataclasses (about
50 µs), and derives the summary columns from them directly (the mirrors carry the
dataclasses' properties, so storage.summary reads them unchanged).

The mirrors are generated from the dataclasses' type hints, so the
dataclasses stay the one description of the schema, and they are at least as
strict as :mod:`storage.schema`: unknown keys are refused at every level
(``forbid_unknown_fields``), required fields must be present, ``bool`` is not
an ``int``, integers fit 64 bits, numbers are finite, enum and literal values
are members.  Two things are narrower on purpose, so that what passes here is
byte for byte what the strict decoder would store: a time must be in the
probe's own canonical form (``YYYY-MM-DDTHH:MM:SS.mmmZ``), and a line with an
escaped NUL or a lone surrogate (which storage would have to clean; msgspec
refuses the latter itself) is not taken.  Whatever the
fast path does not take, for any reason, goes to :mod:`storage.schema`, which
decides and words the refusal exactly as before; so the fast path can only
ever accept what the strict one accepts, never more (tests/storage/test_wire.py
checks this on every kind of damage the strict decoder names).

The observations are stored as the canonical JSON encoded here once, from
the validated mirror (no decode-to-dicts, re-encode round trip).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import inspect
import json
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from probe.observations import DomainObservations, parse_rfc3339, to_dict
from probe.verdict import Verdict
from storage.records import MeasurementRow, StoredMeasurement, Vantage
from storage.schema import SCHEMA

# storage.schema's ranges: a 64-bit integer; a finite number (a JSON number too
# large for an int64 falls back, and storage.schema decides it).
_INT = Annotated[int, msgspec.Meta(ge=-(2**63) + 1, le=2**63 - 1)]
_FLOAT = Annotated[float, msgspec.Meta(gt=-9.2e18, lt=9.2e18)]
# probe.observations.rfc3339's form, kept as text: it is stored as it came.
_TIME = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")]
# The canonical text of a UUID (str(uuid.UUID(...))); other spellings go to storage.schema.
_UUID = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
_NUL = "\\u0000"  # storage would drop it (storage.text.clean_text): the strict path cleans


@dataclass(frozen=True, slots=True)
class Received:
    """One validated upload line: what the collector stores of it.

    The measurement's row (summary columns), its verdict, and its observations
    as the JSON text the observations column keeps.
    """

    row: MeasurementRow
    verdict: Verdict
    document: str

    @classmethod
    def of(cls, item: StoredMeasurement) -> Received:
        """A measurement decoded by storage.schema."""
        text = json.dumps(to_dict(item.observations), ensure_ascii=False, separators=(",", ":"))
        return cls(item.row, item.verdict, text)


def decode_line(line: str) -> Received | None:
    """The measurement of one line, or None when storage.schema must decide (see above)."""
    if _NUL in line:
        return None
    try:
        record: Any = _DECODER.decode(line)
        verdict = msgspec.convert(record.verdict, Verdict, from_attributes=True)
        vantage = msgspec.convert(record.vantage, Vantage, from_attributes=True)
        observed = record.observations
        started_at = parse_rfc3339(observed.started_at)
    except (msgspec.DecodeError, ValueError):  # msgspec.ValidationError is a DecodeError
        return None
    from storage.summary import measurement_row

    # The summary reads the mirrors as it reads the dataclasses (same fields, same
    # properties); building ~110 frozen dataclasses would cost more than decoding.
    row = measurement_row(record.id, vantage, observed, verdict, started_at)
    return Received(row, verdict, _ENCODER.encode(observed).decode())


@functools.cache
def mirror(tp: Any, strict: bool = True) -> Any:
    """The msgspec type that decodes ``tp`` strictly (built once per type).

    ``strict=False``: unknown keys are ignored, as probe.observations.from_dict
    ignores them in documents of older releases (storage.outbox).
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(mirror(a, strict) for a in typing.get_args(tp))]  # noqa: UP007
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple[mirror(args[0], strict), ...]  # type: ignore[misc]
        return tuple[tuple(mirror(a, strict) for a in args)]  # type: ignore[misc]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _struct(tp, strict)
    if origin is Literal or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return tp
    found = _SCALARS.get(tp)
    if found is None:
        raise TypeError(f"no strict mirror for {tp!r}")
    return found


def _struct(cls: type, strict: bool) -> Any:
    """A frozen Struct with the dataclass's fields, defaults, properties and methods."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        tp = mirror(hints[f.name], strict)
        if f.default is not dataclasses.MISSING:
            fields.append((f.name, tp, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp))
    behaviour = {
        name: value
        for name, value in vars(cls).items()
        if isinstance(value, property) or (inspect.isfunction(value) and name[:2] != "__")
    }
    return msgspec.defstruct(
        cls.__name__,
        fields,
        namespace=behaviour,
        forbid_unknown_fields=strict,
        frozen=True,
        gc=False,
    )


_SCALARS: dict[Any, Any] = {
    str: str,
    int: _INT,
    float: _FLOAT,
    bool: bool,
    type(None): type(None),
    dt.datetime: _TIME,
    Any: Any,
}

_Record = msgspec.defstruct(
    "Record",
    [
        ("schema", Literal[SCHEMA]),  # type: ignore[valid-type]
        ("id", _UUID),
        ("vantage", mirror(Vantage)),
        ("verdict", mirror(Verdict)),
        ("observations", mirror(DomainObservations)),
    ],
    forbid_unknown_fields=True,
)
_DECODER = msgspec.json.Decoder(_Record)
_ENCODER = msgspec.json.Encoder()
