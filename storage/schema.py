"""Strict validation of a measurement record against the dataclasses it decodes into.

:func:`probe.observations.from_dict` is deliberately lenient (it reads what
older releases stored, ignores unknown keys, trusts types), which is right
for our own database and wrong for bytes from the network.  This module
checks a parsed ``probe.measurement/1`` record first: every key known, every
required field present, every value of its declared type (``bool`` is not an
``int``, an enum value is one of its members, times parse), so a record that
passes decodes into exactly what it says and stores without a database
error.  The checks walk the dataclasses' type hints, so a field added to the
observations is validated without touching this file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import types
import typing
from typing import Any, Literal

from probe.observations import DomainObservations, parse_rfc3339
from probe.verdict import Verdict
from storage.records import Vantage

MAX_DEPTH = 16  # the observations nest 5 deep; anything deeper is an attack


class SchemaError(ValueError):
    """Where (a dotted path) and why a record does not match the schema."""


def check_record(data: Any) -> None:
    """Raise :class:`SchemaError` unless ``data`` is a well-typed measurement record."""
    if not isinstance(data, dict):
        raise SchemaError("a measurement record must be a JSON object")
    known = {"schema", "id", "vantage", "verdict", "observations"}
    _no_unknown(data, known, "")
    for key in sorted(known):
        if key not in data:
            raise SchemaError(f"missing field '{key}'")
    if not isinstance(data["id"], str):
        raise SchemaError("id: expected a string")
    for key, cls in (("vantage", Vantage), ("verdict", Verdict)):
        _check(cls, data[key], key, 0)
    _check(DomainObservations, data["observations"], "observations", 0)


def _no_unknown(data: dict[str, Any], known: set[str], path: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{path}: " if path else ""
        raise SchemaError(f"{where}unknown field '{unknown[0]}'")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _check(tp: Any, value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{path}: nested too deeply")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(members) < len(typing.get_args(tp)):
            return
        if len(members) != 1:
            raise SchemaError(f"{path}: unsupported union type")
        _check(members[0], value, path, depth)
    elif origin is tuple:
        _check_tuple(tp, value, path, depth)
    elif origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise SchemaError(f"{path}: expected one of {allowed}")
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _check_dataclass(tp, value, path, depth)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        if value not in {m.value for m in tp}:
            raise SchemaError(f"{path}: unknown value {_short(value)}")
    else:
        _check_scalar(tp, value, path)


def _check_tuple(tp: Any, value: Any, path: str, depth: int) -> None:
    if not isinstance(value, list):
        raise SchemaError(f"{path}: expected a list")
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        for i, item in enumerate(value):
            _check(args[0], item, f"{path}[{i}]", depth + 1)
        return
    if len(value) != len(args):
        raise SchemaError(f"{path}: expected a list of {len(args)} items")
    for i, (arg, item) in enumerate(zip(args, value, strict=True)):
        _check(arg, item, f"{path}[{i}]", depth + 1)


def _check_dataclass(cls: type, value: Any, path: str, depth: int) -> None:
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: expected an object")
    fields = dataclasses.fields(cls)
    _no_unknown(value, {f.name for f in fields}, path)
    hints = _hints(cls)
    for f in fields:
        if f.name in value:
            _check(hints[f.name], value[f.name], f"{path}.{f.name}", depth + 1)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{path}: missing field '{f.name}'")


def _check_scalar(tp: Any, value: Any, path: str) -> None:
    if tp is str:
        ok = isinstance(value, str)
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and abs(value) < 1e300
    elif tp is dt.datetime:
        ok = isinstance(value, str) and _is_time(value)
    elif tp is Any:
        ok = True
    else:
        raise SchemaError(f"{path}: no validator for {tp!r}")
    if not ok:
        raise SchemaError(f"{path}: expected {_name(tp)}, got {_short(value)}")


def _is_time(text: str) -> bool:
    try:
        parse_rfc3339(text)
    except ValueError:
        return False
    return True


def _name(tp: Any) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
    return names.get(tp, "an RFC 3339 time")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
