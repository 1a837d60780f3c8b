"""A trace for people (hop list, censor marked, one evidence sentence) and as probe.trace/1."""

from __future__ import annotations

import dataclasses
from typing import Any

from probe.observations import rfc3339
from probe.trace.locate import Fingerprint, Location
from probe.trace.observations import Packet, Probe, TraceObservation

SCHEMA = "probe.trace/1"


def hops(obs: TraceObservation) -> list[dict[str, Any]]:
    return [
        {"ttl": p.ttl, "address": p.responder, "outcome": p.outcome, "rtt_ms": p.rtt_ms}
        for p in obs.path
    ]


def _packet(packet: Packet, hop: int | None) -> dict[str, Any]:
    return {**dataclasses.asdict(packet), "tcp_options": list(packet.tcp_options), "hop": hop}


def _fingerprint(fp: Fingerprint | None, agree: bool | None) -> dict[str, Any] | None:
    if fp is None:
        return None
    return {
        "kind": fp.kind,
        "injected": fp.injected,
        "agrees_with_ttl_method": agree,
        "suspect": _packet(fp.suspect, fp.suspect_hop),
        "reference": None if fp.reference is None else _packet(fp.reference, fp.reference_hop),
    }


def to_json(obs: TraceObservation, loc: Location) -> dict[str, Any]:
    split = loc.split
    return {
        "schema": SCHEMA,
        "domain": obs.domain,
        "address": obs.address,
        "port": obs.port,
        "interference": loc.interference,
        "censor_hop": loc.censor_hop,
        "censor_address": loc.censor_address,
        "trigger_ttl": loc.trigger_ttl,
        "server_hop": loc.server_hop,
        "hops": hops(obs),
        "fingerprints": _fingerprint(loc.fingerprint, loc.agree),
        "split": None
        if split is None
        else {
            "segments": split.segments,
            "records": split.records,
            "reassembles": split.reassembles,
        },
        "evidence": loc.evidence,
        "errors": list(obs.errors),
        "started_at": rfc3339(obs.started_at),
        "duration_ms": obs.duration_ms,
    }


def _hop_line(probe: Probe, loc: Location, address: str | None) -> str:
    mark = ">" if probe.ttl == loc.censor_hop else " "
    who = probe.responder or "*"
    note = ""
    if probe.ttl == loc.censor_hop:
        note = "  <- censor"
    elif probe.responder == address and probe.outcome != "time-exceeded":
        note = f"  destination ({probe.outcome})"
    rtt = f"{probe.rtt_ms:g} ms" if probe.rtt_ms is not None else ""
    return f"  {mark}{probe.ttl:>3}  {who:<40} {rtt:>10}{note}"


def text(obs: TraceObservation, loc: Location) -> str:
    head = loc.interference or ("no interference" if obs.address else "not traced")
    where = ""
    if loc.censor_hop is not None:
        where = f"  censor at hop {loc.censor_hop}" + (
            f" ({loc.censor_address})" if loc.censor_address else ""
        )
    lines = [f"{obs.domain}  {head}{where}  [{obs.duration_ms / 1000:.1f} s]"]
    if obs.path:
        lines.append(f"  path to {obs.address} tcp/{obs.port}:")
        lines += [_hop_line(p, loc, obs.address) for p in obs.path]
    if loc.censor_hop is not None and not any(p.ttl == loc.censor_hop for p in obs.path):
        lines.append(f"  > censor at hop {loc.censor_hop} (not in the path above)")
    if loc.split is not None:
        verdict = {True: "reassembles", False: "does not reassemble", None: "undetermined"}
        lines.append(
            f"  split ClientHello: TCP segments {loc.split.segments}, TLS records "
            f"{loc.split.records}: the filter {verdict[loc.split.reassembles]}"
        )
    lines += [f"  error: {e}" for e in obs.errors]
    lines.append(f"  evidence: {loc.evidence}")
    return "\n".join(lines)
