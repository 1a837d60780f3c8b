"""storage.schema: the strict decoder builds exactly what the lenient codec builds,
and refuses what the lenient codec would let through."""

from __future__ import annotations

import json

import pytest

from probe.observations import to_dict
from storage.jsonl import decode, encode
from storage.schema import SchemaError, decode_record
from tests.collectors import helpers as H
from tests.storage import factories as F


@pytest.mark.parametrize("blocked", [True, False])
def test_strict_decoding_agrees_with_the_lenient_codec(blocked: bool) -> None:
    item = H.measurement(blocked=blocked)
    data = json.loads(json.dumps(encode(item)))
    strict = decode_record(data)
    assert strict == decode(json.loads(json.dumps(encode(item)))) == item
    assert to_dict(strict.observations) == data["observations"]


def test_text_is_cleaned_while_decoding() -> None:
    data = H.record(H.measurement())
    data["observations"]["input"] = "x.com\x00\ud800"
    assert decode_record(data).observations.input == "x.com\ufffd"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "observations.endpoints.0.port",
            "443",
            "observations.endpoints[0].port: expected an integer",
        ),
        ("observations.duration_ms", 10**400, "observations.duration_ms: expected a number"),
        ("observations.duration_ms", float("inf"), "expected a number"),
        ("observations.dns.0.origin", "elsewhere", "observations.dns[0].origin: expected one of"),
        ("verdict.https_ok", 1, "verdict.https_ok: expected true or false"),
        ("vantage.asn", True, "vantage.asn: expected an integer"),
        ("id", 5, "id: expected a UUID"),
    ],
)
def test_wrong_types_are_named_by_path(path: str, value: object, message: str) -> None:
    data = H.record(H.measurement(F.VANTAGE))
    target = data
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[keys[-1]] = value
    with pytest.raises(SchemaError) as caught:
        decode_record(data)
    assert message in str(caught.value)
