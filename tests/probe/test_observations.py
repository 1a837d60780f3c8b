"""The codec must round-trip every observation kind without loss: storage and
re-classification depend on it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from probe.failures import Failure
from probe.observations import (
    Certificate,
    CheckSettings,
    ControlSiteObservation,
    DNSQuery,
    DNSRecord,
    DNSReply,
    DomainObservations,
    EndpointObservation,
    HTTPObservation,
    Redirect,
    TCPObservation,
    TLSObservation,
    from_dict,
    rfc3339,
    to_dict,
)


def sample() -> DomainObservations:
    reply = DNSReply(
        "NOERROR",
        (
            DNSRecord("CNAME", "x.com", "edge.x.com", 30),
            DNSRecord("A", "edge.x.com", "10.0.0.1", 60),
        ),
        3.5,
        "10.0.0.53:53",
    )
    injected = DNSReply("NOERROR", (DNSRecord("A", "x.com", "127.0.0.1", 0),), 1.0, "10.0.0.53:53")
    cert = Certificate(
        "CN=x.com",
        "CN=Lab CA",
        ("x.com", "10.0.0.1"),
        "ab" * 32,
        "2026-01-01T00:00:00.000Z",
        "2027-01-01T00:00:00.000Z",
    )
    tcp = TCPObservation("10.0.0.1", 443, 5.0, 1.2, None)
    tls = TLSObservation(
        "10.0.0.1", 443, "x.com", 6.3, 4.0, Failure.TLS_UNKNOWN_AUTHORITY, None, None, None, (cert,)
    )
    http = HTTPObservation(
        "http://x.com/",
        "10.0.0.1",
        80,
        "x.com",
        None,
        7.0,
        9.0,
        None,
        status=302,
        headers=(("location", "https://x.com/"),),
        title="X",
        body="<title>X</title>",
        body_length=16,
        body_sha256="cd" * 32,
        redirects=(Redirect(302, "https://x.com/"),),
        ttfb_ms=2.0,
        body_ms=0.5,
    )
    return DomainObservations(
        domain="x.com",
        input="https://x.com/",
        platform="x",
        started_at=dt.datetime(2024, 2, 17, 17, 0, 0, 123000, tzinfo=dt.UTC),
        duration_ms=812.5,
        settings=CheckSettings(
            "udp://10.0.0.53:53",
            ("https://10.9.9.9/dns-query",),
            "example.com",
            ("example.com",),
            4.0,
            "/tmp/ca.pem",
        ),
        dns=(
            DNSQuery(
                "udp://10.0.0.53:53", "vantage", "x.com", "A", 0.0, 1.0, None, (injected, reply)
            ),
            DNSQuery("udp://10.0.0.53:53", "vantage", "x.com", "AAAA", 0.0, 900.0, Failure.TIMEOUT),
        ),
        endpoints=(
            EndpointObservation("10.0.0.1", 443, ("vantage", "control"), tcp, tls, tls, None),
            EndpointObservation(
                "10.0.0.1", 80, ("vantage",), tcp, http=http, http_control_host=http
            ),
            EndpointObservation(
                "127.0.0.1", 443, ("vantage",), None, skipped=Failure.ADDRESS_UNUSABLE
            ),
        ),
        controls=(ControlSiteObservation("example.com", (), tcp, None),),
        probe_version="0.1.0",
        notes=("capped",),
    )


def test_round_trip_through_json_is_lossless() -> None:
    obs = sample()
    text = json.dumps(to_dict(obs))
    assert from_dict(DomainObservations, json.loads(text)) == obs


def test_to_dict_gives_plain_json_values_in_field_order() -> None:
    """Every enum becomes its plain value, every tuple a list, field order kept:
    the JSON line and storage read these, whatever the converter made per class."""
    data = to_dict(sample())
    assert list(data) == [f.name for f in dataclasses.fields(DomainObservations)]
    tls = data["endpoints"][0]["tls"]
    assert tls["failure"] == Failure.TLS_UNKNOWN_AUTHORITY.value
    assert type(tls["failure"]) is str
    assert data["started_at"] == rfc3339(sample().started_at)

    def plain(value: Any) -> None:
        assert type(value) in (dict, list, str, int, float, bool, type(None)), value
        inside = value.values() if isinstance(value, dict) else value
        for inner in inside if isinstance(value, dict | list) else ():
            plain(inner)

    plain(data)
    assert to_dict(EmptyRecord()) == {}


@dataclasses.dataclass(frozen=True)
class EmptyRecord:
    """A dataclass without fields still converts (to an empty object)."""


def test_old_records_missing_new_fields_still_load() -> None:
    data = to_dict(sample())
    del data["notes"]
    del data["endpoints"][0]["http_control_sni"]
    restored = from_dict(DomainObservations, data)
    assert restored.notes == ()
    assert restored.endpoints[0].http_control_sni is None


def test_rfc3339_is_utc_with_z() -> None:
    when = dt.datetime(2024, 2, 17, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    assert rfc3339(when) == "2024-02-17T17:00:00.000Z"


def test_reply_helpers() -> None:
    query = sample().dns[0]
    assert query.addresses == ("127.0.0.1",)  # the first reply is the one a stub uses
    assert query.replies[1].cnames == ("edge.x.com",)
    throughput = HTTPObservation(
        "u", "a", 443, "h", "h", 0, 1000, None, body_length=64 * 1024, body_ms=500.0
    ).throughput_bps
    assert throughput is not None and round(throughput) == 64 * 1024 * 8 * 2


def test_quick_init_builds_the_same_frozen_records() -> None:
    """The dict-writing ``__init__`` keeps dataclasses' signature, defaults and
    frozenness; classes it cannot mirror keep their own ``__init__``."""
    import pytest

    from probe.observations import DNSQuery, TCPObservation, quick_init

    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int
        b: str = "x"
        c: tuple[int, ...] = ()

    @quick_init
    @dataclasses.dataclass(frozen=True)
    class Quick:
        a: int
        b: str = "x"
        c: tuple[int, ...] = ()

    assert "_dict_" in Quick.__init__.__code__.co_varnames  # the quick one is in use
    for quick, plain in (
        (Quick(1), Plain(1)),
        (Quick(1, "y"), Plain(1, "y")),
        (Quick(c=(3,), a=2), Plain(c=(3,), a=2)),
    ):
        assert dataclasses.asdict(quick) == dataclasses.asdict(plain)
        assert quick == Quick(**dataclasses.asdict(quick))
        assert hash(quick) == hash(Quick(**dataclasses.asdict(quick)))
        with pytest.raises(dataclasses.FrozenInstanceError):
            quick.a = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, d=2)  # type: ignore[call-arg]
    assert "_dict_" in TCPObservation.__init__.__code__.co_varnames
    assert DNSQuery("r", "vantage", "q", "A", 0.0, 1.0, None).replies == ()

    @dataclasses.dataclass(frozen=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError

    init = Checked.__init__
    assert quick_init(Checked).__init__ is init
