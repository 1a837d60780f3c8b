"""Stored traces: kept whole, linked to their measurement, re-located, on both backends."""

from __future__ import annotations

import dataclasses
import datetime as dt

from probe.trace.locate import locate
from probe.trace.observations import Packet, Probe, Series, TraceObservation
from storage import Store, Vantage
from storage.traces import TraceSummary, iter_traces, last_trace_at, relocate, save_trace

SERVER = "10.9.129.10"
SYNACK = Packet("syn-ack", SERVER, 61, 0, True, "SA", 64240, tcp_options=("MSS=1460",))
RESET = Packet("reset", SERVER, 63, 0, False, "RA", 0)


def observation(started: dt.datetime) -> TraceObservation:
    control = Series("tls", "control.lab", True, (Probe(64, "reply", SERVER, packets=(SYNACK,)),))
    target = Series("tls", "x.com", False, (Probe(64, "reset", SERVER, packets=(SYNACK, RESET)),))
    return TraceObservation(
        domain="x.com",
        control_name="control.lab",
        started_at=started,
        duration_ms=1234.5,
        address=SERVER,
        port=443,
        path=(Probe(1, "time-exceeded", "10.9.1.1", 0.4), Probe(2, "silence")),
        baseline=(target, control),
        errors=("one line",),
    )


def test_save_read_relocate(db_url: str) -> None:
    start = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
    obs = observation(start)
    wrong = TraceSummary(None, None, None, "stale decision")
    with Store.open(db_url) as store:
        assert last_trace_at(store, "x.com") is None
        first = save_trace(store, obs, wrong, Vantage("lab"))
        second = save_trace(
            store,
            dataclasses.replace(obs, started_at=start + dt.timedelta(hours=1)),
            wrong,
            Vantage("lab"),
        )
        assert first != second
        assert last_trace_at(store, "x.com") == start + dt.timedelta(hours=1)
        stored = list(iter_traces(store, "x.com"))
        assert [s.id for s in stored] == [first, second]
        assert stored[0].observation.path == obs.path
        assert stored[0].observation.baseline == obs.baseline  # packets and options intact
        assert stored[0].vantage == "lab" and stored[0].measurement_id is None

        def decide(o: TraceObservation) -> TraceSummary:
            loc = locate(o)
            return TraceSummary(loc.interference, loc.censor_hop, loc.censor_address, loc.evidence)

        assert relocate(store, decide) == (2, 2)
        assert relocate(store, decide) == (2, 0)  # nothing twice
        assert {s.summary.interference for s in iter_traces(store)} == {"tls.reset"}
        assert list(iter_traces(store, "t.co")) == []
