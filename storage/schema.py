"""Strict decoding of a measurement record from the network, compiled per type.

:func:`probe.observations.from_dict` is deliberately lenient (it reads what
older releases stored, ignores unknown keys, trusts types), which is right
for our own database and wrong for bytes from the network.  :func:`decode_record`
checks a parsed ``probe.measurement/1`` record while it builds the
dataclasses: every key known, every required field present, every value of
its declared type (``bool`` is not an ``int``, an enum value is one of its
members, times parse), so a record that passes is exactly what it says and
stores without a database error.  Text is cleaned on the way
(:func:`storage.text.clean_text`), so the tree stores as it is.

The checks are derived from the dataclasses' type hints, so a field added to
the observations is validated without touching this file; they are compiled
once per type into plain closures (no ``typing`` introspection per value),
because a collector decodes thousands of these trees per second.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, Literal

from probe.observations import DomainObservations, parse_rfc3339
from probe.verdict import Verdict
from storage.records import StoredMeasurement, Vantage
from storage.text import clean_text

SCHEMA = "probe.measurement/1"
_RECORD_KEYS = frozenset({"schema", "id", "vantage", "verdict", "observations"})

Decoder = Callable[[Any], Any]


class SchemaError(ValueError):
    """Where (a dotted path) and why a record does not match the schema."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def within(self, part: str) -> SchemaError:
        joined = (
            part
            if not self.path
            else (part + self.path if self.path[0] == "[" else f"{part}.{self.path}")
        )
        return SchemaError(self.reason, joined)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def decode_record(data: Any) -> StoredMeasurement:
    """The measurement a record describes; :class:`SchemaError` says where it is wrong."""
    from storage.summary import measurement_row

    if type(data) is not dict:
        raise SchemaError("a measurement record must be a JSON object")
    unknown = sorted(data.keys() - _RECORD_KEYS)
    if unknown:
        raise SchemaError(f"unknown field '{unknown[0]}'")
    for key in sorted(_RECORD_KEYS):
        if key not in data:
            raise SchemaError(f"missing field '{key}'")
    if data["schema"] != SCHEMA:
        raise SchemaError(f'not a measurement record (expected "schema": "{SCHEMA}")')
    try:
        measurement_id = str(uuid.UUID(data["id"]))
    except (TypeError, ValueError, AttributeError):
        raise SchemaError("expected a UUID", "id") from None
    vantage = _field(Vantage, data, "vantage")
    verdict = _field(Verdict, data, "verdict")
    obs = _field(DomainObservations, data, "observations")
    row = measurement_row(measurement_id, vantage, obs, verdict)
    return StoredMeasurement(row, obs, verdict)


def _field(tp: Any, data: dict[str, Any], key: str) -> Any:
    try:
        return decoder(tp)(data[key])
    except SchemaError as exc:
        raise exc.within(key) from None
    except RecursionError:
        raise SchemaError("nested too deeply", key) from None


_DECODERS: dict[Any, Decoder] = {}


def decoder(tp: Any) -> Decoder:
    """The strict decoder of type ``tp`` (built once, then cached)."""
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _build(tp)
    return found


def _build(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _optional(tp)
    if origin is tuple:
        return _tuple(tp)
    if origin is Literal:
        return _literal(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    scalar = _SCALARS.get(tp)
    if scalar is None:
        raise TypeError(f"no strict decoder for {tp!r}")
    return scalar


def _optional(tp: Any) -> Decoder:
    args = typing.get_args(tp)
    members = [a for a in args if a is not type(None)]
    if len(members) != 1 or len(members) == len(args):
        raise TypeError(f"no strict decoder for {tp!r}")
    inner = decoder(members[0])

    def decode(value: Any) -> Any:
        return None if value is None else inner(value)

    return decode


def _tuple(tp: Any) -> Decoder:
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        item = decoder(args[0])

        def decode_many(value: Any) -> tuple[Any, ...]:
            if type(value) is not list:
                raise SchemaError("expected a list")
            out = []
            for i, x in enumerate(value):
                try:
                    out.append(item(x))
                except SchemaError as exc:
                    raise exc.within(f"[{i}]") from None
            return tuple(out)

        return decode_many
    items = [decoder(a) for a in args]

    def decode_fixed(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) != len(items):
            raise SchemaError(f"expected a list of {len(items)} items")
        out = []
        for i, (dec, x) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(dec(x))
            except SchemaError as exc:
                raise exc.within(f"[{i}]") from None
        return tuple(out)

    return decode_fixed


def _literal(tp: Any) -> Decoder:
    allowed = typing.get_args(tp)
    text = ", ".join(repr(a) for a in allowed)

    def decode(value: Any) -> Any:
        if type(value) is not str or value not in allowed:
            raise SchemaError(f"expected one of {text}")
        return value

    return decode


def _enum(tp: type[enum.Enum]) -> Decoder:
    members = {m.value: m for m in tp}

    def decode(value: Any) -> Any:
        if type(value) is not str:
            raise SchemaError(f"unknown value {_short(value)}")
        found = members.get(value)
        if found is None:
            raise SchemaError(f"unknown value {_short(value)}")
        return found

    return decode


def _dataclass(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [
        (
            f.name,
            decoder(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]
    known = frozenset(name for name, _, _ in fields)

    def decode(value: Any) -> Any:
        if type(value) is not dict:
            raise SchemaError("expected an object")
        if not value.keys() <= known:
            raise SchemaError(f"unknown field '{sorted(value.keys() - known)[0]}'")
        kwargs = {}
        for name, dec, required in fields:
            if name in value:
                try:
                    kwargs[name] = dec(value[name])
                except SchemaError as exc:
                    raise exc.within(name) from None
            elif required:
                raise SchemaError(f"missing field '{name}'")
        return cls(**kwargs)

    return decode


def _str(value: Any) -> str:
    if type(value) is not str:
        raise SchemaError(f"expected a string, got {_short(value)}")
    return clean_text(value)  # no NUL, no lone surrogate: storable as it is


def _int(value: Any) -> int:
    if type(value) is not int or not -(2**63) < value < 2**63:
        raise SchemaError(f"expected an integer, got {_short(value)}")
    return value


def _float(value: Any) -> float:
    kind = type(value)
    if kind is float and math.isfinite(value):
        return float(value)
    if kind is int and -(2**63) < value < 2**63:
        return float(value)
    raise SchemaError(f"expected a number, got {_short(value)}")


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise SchemaError(f"expected true or false, got {_short(value)}")
    return value


def _time(value: Any) -> dt.datetime:
    if type(value) is str:
        try:
            return parse_rfc3339(value)
        except ValueError:
            pass
    raise SchemaError(f"expected an RFC 3339 time, got {_short(value)}")


def _any(value: Any) -> Any:
    return value


_SCALARS: dict[Any, Decoder] = {
    str: _str,
    int: _int,
    float: _float,
    bool: _bool,
    dt.datetime: _time,
    Any: _any,
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
