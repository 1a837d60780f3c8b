"""The decision alone, on hand-built traces: where the censor is, and who sent its packets."""

from __future__ import annotations

import datetime as dt

import pytest

from probe.observations import from_dict, to_dict
from probe.trace.locate import locate, sender_hop
from probe.trace.observations import Packet, Probe, Protocol, Series, TraceObservation

ROUTERS = ("10.9.1.1", "10.9.4.1", "10.9.2.2")
SERVER = "10.9.129.10"
SYNACK = Packet("syn-ack", SERVER, 61, 0, True, "SA", 64240)


def reset(ttl: int) -> Packet:
    return Packet("reset", SERVER, ttl, 0, False, "RA", 0)


def path(server_hop: int = 4) -> tuple[Probe, ...]:
    hops = [Probe(i + 1, "time-exceeded", ROUTERS[i]) for i in range(server_hop - 1)]
    return (*hops, Probe(server_hop, "reply", SERVER))


def control_series(protocol: Protocol = "tls", server_hop: int = 4) -> Series:
    probes = [
        Probe(p.ttl, "time-exceeded" if p.ttl < server_hop else "reply", p.responder)
        for p in path(server_hop)
    ]
    return Series(protocol, "control.lab", True, tuple(probes))


def target_series(outcomes: dict[int, Probe], protocol: Protocol = "tls") -> Series:
    default = {p.ttl: p for p in control_series(protocol).probes}
    return Series(
        protocol, "x.com", False, tuple({**default, **outcomes}[t] for t in sorted(default))
    )


def observation(
    baseline_target: Probe,
    series: Series | None = None,
    protocol: Protocol = "tls",
    split: tuple[Probe, Probe] | None = None,
) -> TraceObservation:
    baseline = (
        Series(protocol, "x.com", False, (baseline_target,)),
        Series(protocol, "control.lab", True, (Probe(64, "reply", SERVER, packets=(SYNACK,)),)),
    )
    return TraceObservation(
        domain="x.com",
        control_name="control.lab",
        started_at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        duration_ms=1.0,
        address=SERVER,
        port=443,
        path=path(),
        baseline=baseline,
        ttl_series=() if series is None else (series, control_series(protocol)),
        split_segments=split[0] if split else None,
        split_records=split[1] if split else None,
    )


@pytest.mark.parametrize(
    ("ttl", "hop"),
    [(61, 4), (63, 2), (64, 1), (128, 1), (120, 9), (255, 1), (250, 6), (0, None), (300, None)],
)
def test_sender_hop(ttl: int, hop: int | None) -> None:
    assert sender_hop(ttl) == hop


def test_injected_reset_at_hop_two() -> None:
    rst = Probe(3, "reset", SERVER, packets=(SYNACK, reset(63)))
    obs = observation(
        Probe(64, "reset", SERVER, packets=(SYNACK, reset(63))),
        target_series({3: rst, 4: Probe(4, "reset", SERVER)}),
        split=(Probe(64, "reply", SERVER), Probe(64, "reset", SERVER)),
    )
    loc = locate(obs)
    assert (loc.interference, loc.censor_hop, loc.censor_address, loc.trigger_ttl) == (
        "tls.reset", 2, ROUTERS[1], 3
    )  # fmt: skip
    assert loc.fingerprint is not None and loc.fingerprint.injected is True and loc.agree is True
    assert (
        loc.split is not None and loc.split.segments == "passed" and loc.split.records == "blocked"
    )
    assert loc.split.reassembles is False
    assert "hop 2" in loc.evidence and "injected" in loc.evidence
    assert locate(from_dict(TraceObservation, to_dict(obs))) == loc  # stored, re-located alike


def test_genuine_reset_from_the_server_names_no_censor() -> None:
    obs = observation(
        Probe(64, "reset", SERVER, packets=(SYNACK, reset(61))),
        target_series({4: Probe(4, "reset", SERVER)}),
    )
    loc = locate(obs)
    assert loc.interference == "tls.reset" and loc.trigger_ttl == 4
    assert (
        loc.censor_hop is None and loc.fingerprint is not None and loc.fingerprint.injected is False
    )
    assert "genuine" in loc.evidence


def test_box_right_before_the_server_is_found_by_the_reset_ttl() -> None:
    obs = observation(
        Probe(64, "reset", SERVER, packets=(SYNACK, reset(62))),
        target_series({4: Probe(4, "reset", SERVER)}),
    )
    loc = locate(obs)
    assert (loc.censor_hop, loc.censor_address) == (3, ROUTERS[2])


def test_drop_is_located_by_silence() -> None:
    obs = observation(
        Probe(64, "silence"),
        target_series({3: Probe(3, "silence"), 4: Probe(4, "silence")}),
    )
    loc = locate(obs)
    assert (loc.interference, loc.censor_hop, loc.fingerprint) == ("tls.timeout", 2, None)


def test_dns_injection() -> None:
    injected = Packet("dns-reply", "10.9.128.53", 63, 0, True)
    genuine = Packet("dns-reply", "10.9.128.53", 61, 7, True)
    target = Series(
        "dns", "x.com", False,
        (Probe(1, "time-exceeded", ROUTERS[0]), Probe(2, "time-exceeded", ROUTERS[1]),
         Probe(3, "reply", "10.9.128.53", packets=(injected,), answers=(("10.9.3.80",),)),
         Probe(4, "reply", "10.9.128.53", packets=(injected, genuine))),
    )  # fmt: skip
    control = Series("dns", "control.lab", True, control_series("dns").probes)
    obs = TraceObservation(
        domain="x.com",
        control_name="control.lab",
        started_at=dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        duration_ms=1.0,
        baseline=(
            Series("dns", "x.com", False, (Probe(64, "reply", packets=(injected, genuine)),)),
            Series("dns", "control.lab", True, (Probe(64, "reply", packets=(genuine,)),)),
        ),
        ttl_series=(target, control),
    )
    loc = locate(obs)
    assert (loc.interference, loc.censor_hop, loc.censor_address) == (
        "dns.injection",
        2,
        ROUTERS[1],
    )
    assert loc.fingerprint is not None and loc.fingerprint.injected is True and loc.agree is True


def test_nothing_interferes() -> None:
    obs = observation(Probe(64, "reply", SERVER, packets=(SYNACK,)), None)
    loc = locate(obs)
    assert loc.interference is None and loc.censor_hop is None and loc.fingerprint is None
    assert loc.evidence.startswith("No interference")


def test_no_address_is_not_traced_rather_than_clean() -> None:
    """An NXDOMAIN from the ISP's own resolver (lab scenario dns_nxdomain) said "no
    interference", with evidence that probes "reached the target": none was sent."""
    from probe.trace.render import text

    obs = observation(Probe(64, "reply", SERVER, packets=(SYNACK,)), None)
    obs = TraceObservation(
        **{**obs.__dict__, "address": None, "port": None, "path": (), "baseline": ()}
    )
    loc = locate(obs)
    assert loc.interference is None and loc.censor_hop is None and loc.server_hop is None
    assert loc.evidence.startswith(f"Not traced: {obs.resolver} gave no address for x.com")
    assert "reached" not in loc.evidence
    assert text(obs, loc).startswith("x.com  not traced  [")


def test_control_failing_too_is_not_interference() -> None:
    obs = observation(Probe(64, "silence"), None)
    broken = obs.baseline[0], Series("tls", "control.lab", True, (Probe(64, "silence"),))
    loc = locate(TraceObservation(**{**obs.__dict__, "baseline": broken}))
    assert loc.interference is None


def test_thirty_silent_hops() -> None:
    silent = tuple(Probe(t, "silence") for t in range(1, 31))
    obs = observation(Probe(64, "silence"), None)
    loc = locate(TraceObservation(**{**obs.__dict__, "path": silent}))
    assert loc.censor_hop is None and loc.server_hop is None


def test_a_server_one_hop_away_is_one_hop_away() -> None:
    """A server on the probe's own link read '(1 hops away)' in the evidence."""
    obs = observation(Probe(64, "reply", SERVER, packets=(SYNACK,)), None)
    near = TraceObservation(**{**obs.__dict__, "path": path(server_hop=1)})
    assert f"reached {SERVER} (1 hop away) as the controls did" in locate(near).evidence
    assert f"reached {SERVER} (4 hops away) as the controls did" in locate(obs).evidence
