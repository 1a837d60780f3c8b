"""storage.wire: the fast decoder builds exactly what storage.schema builds, and never
takes a line storage.schema would refuse (it hands those over: None)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from probe.failures import Failure
from probe.observations import (
    DomainObservations,
    HelperASN,
    HelperEndpoint,
    HelperHTTP,
    HelperObservation,
    Redirect,
    to_dict,
)
from storage.records import StoredMeasurement
from storage.schema import SchemaError, decode_record
from storage.summary import measurement_row
from storage.wire import Received, decode_line, mirror
from tests.collectors import helpers as H
from tests.storage import factories as F


def _text(data: dict[str, Any]) -> str:
    return json.dumps(data)


def _full() -> StoredMeasurement:
    """A measurement with every kind of observation, the control helper's view included."""
    item = H.measurement(F.VANTAGE, started_at=F.START)
    helper = HelperObservation(
        "https://helper.example/", 10.0, 500.0, None, "https://x.com/",
        dns_addresses=("192.0.2.10",),
        endpoints=(HelperEndpoint("192.0.2.10", 443, None, "x.com", Failure.CONNECTION_RESET),),
        http=HelperHTTP(None, 200, 1234, "X", (("Server", "nginx"),), (Redirect(301, "/"),)),
        asns=(HelperASN("192.0.2.10", 64500),),
    )  # fmt: skip
    obs = dataclasses.replace(item.observations, helper=helper)
    row = measurement_row(item.row.id, item.row.vantage, obs, item.verdict)
    return StoredMeasurement(row, obs, item.verdict)


@pytest.mark.parametrize("blocked", [True, False])
def test_the_fast_path_builds_what_the_strict_decoder_builds(blocked: bool) -> None:
    item = H.measurement(F.VANTAGE, blocked=blocked, started_at=F.START)
    item = _full() if blocked else item
    data = H.record(item)
    received = decode_line(_text(data))
    assert received is not None, "a probe's own record must take the fast path"
    assert decode_record(data) == item
    assert received == Received.of(item)  # row, verdict and the stored text
    assert json.loads(received.document) == data["observations"] == to_dict(item.observations)


def _objects(value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object of a record, with its dotted path."""
    if isinstance(value, dict):
        yield path, value
        for key, inner in value.items():
            yield from _objects(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _objects(inner, f"{path}.{i}")


def _at(data: dict[str, Any], path: str) -> Any:
    target: Any = data
    for key in path.split(".") if path else []:
        target = target[int(key)] if isinstance(target, list) else target[key]
    return target


def test_every_mirror_refuses_unknown_fields() -> None:
    seen: set[type] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if tp in seen:
                return
            seen.add(tp)
            assert tp.__struct_config__.forbid_unknown_fields, tp
            for field in msgspec.structs.fields(tp):
                walk(field.type)
        for arg in getattr(tp, "__args__", ()):
            walk(arg)
        walk_origin = getattr(tp, "__origin__", None)
        if walk_origin is not None and walk_origin is not tp:
            walk(walk_origin)

    walk(mirror(DomainObservations))
    assert len(seen) >= 15  # every observation dataclass, down to DNS records


def test_an_unknown_key_at_any_depth_is_never_taken() -> None:
    data = H.record(_full())
    paths = [path for path, _ in _objects(data)]
    assert any(p.startswith("observations.helper.http.redirects") for p in paths)
    for path in paths:
        broken = copy.deepcopy(data)
        _at(broken, path)["surprise"] = 1
        assert decode_line(_text(broken)) is None, path
        with pytest.raises(SchemaError, match="unknown field 'surprise'"):
            decode_record(broken)


def _set(path: str, value: Any) -> dict[str, Any]:
    data = H.record(H.measurement(F.VANTAGE, started_at=F.START))
    parent, _, key = path.rpartition(".")
    target = _at(data, parent)
    if isinstance(target, list):
        target[int(key)] = value
    elif value is KeyError:
        del target[key]
    else:
        target[key] = value
    return data


# Each of these the strict decoder refuses: the fast path must hand it over.
REFUSED = [
    ("schema", "probe.measurement/9"),
    ("id", "not-a-uuid"),
    ("id", 5),
    ("vantage", KeyError),
    ("observations.settings", KeyError),
    ("observations.settings.resolver", KeyError),
    ("observations.domain", 5),
    ("observations.domain", None),
    ("observations.duration_ms", True),
    ("observations.duration_ms", "1.5"),
    ("observations.duration_ms", 10**400),
    ("observations.duration_ms", 2**63),
    ("observations.endpoints.0.port", 2**63),
    ("observations.endpoints.0.port", -(2**63)),
    ("observations.endpoints.0.port", 443.0),
    ("observations.endpoints.0.port", True),
    ("observations.endpoints.0.origins.0", "elsewhere"),
    ("observations.endpoints", {"a": 1}),
    ("observations.dns.0.origin", "elsewhere"),
    ("observations.started_at", "yesterday"),
    ("observations.started_at", "2024-02-30T17:05:00.123Z"),
    ("verdict.status", "hacked"),
    ("verdict.blocking.0", "teleport"),
    ("verdict.https_ok", 1),
    ("vantage.asn", True),
    ("vantage.asn", "17557"),
]


@pytest.mark.parametrize(("path", "value"), REFUSED)
def test_what_the_strict_decoder_refuses_is_never_taken(path: str, value: Any) -> None:
    data = _set(path, value)
    assert decode_line(_text(data)) is None
    with pytest.raises(SchemaError):
        decode_record(data)


def test_json_that_python_reads_but_is_not_json_is_not_taken() -> None:
    text = _text(H.record(H.measurement(F.VANTAGE, started_at=F.START)))
    assert decode_line(text.replace('"duration_ms": 250.75', '"duration_ms": NaN')) is None
    assert decode_line(text[:-1]) is None
    assert decode_line(text + "}") is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("observations.started_at", "2024-02-17T17:05:00.123+00:00"),  # not the probe's form
        ("observations.started_at", "2024-02-17T17:05:00.123"),  # naive: read as UTC
        ("observations.input", "x.com\x00"),  # NUL: cleaned by storage.schema
        ("observations.input", "x.com\ud800"),  # lone surrogate: replaced by storage.schema
        ("id", "0E6D8C3A-1F2B-4C5D-8E9F-0A1B2C3D4E5F"),  # a UUID, not in its canonical text
        ("id", "{0e6d8c3a-1f2b-4c5d-8e9f-0a1b2c3d4e5f}"),
    ],
)
def test_what_the_strict_decoder_rewrites_is_left_to_it(path: str, value: Any) -> None:
    data = _set(path, value)
    assert decode_line(_text(data)) is None
    decode_record(data)  # accepted there, and normalised for storage
