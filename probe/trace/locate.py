"""Where the interference happens and who sent its packets: a pure function of a trace.

Definitions (docs/methodology.md, "Locating the censor"):

- the **trigger TTL** k is the smallest TTL at which the target probe meets
  interference (a reset, silence, a blockpage, a DNS answer) while the control
  probe with the same TTL does not; the probe with TTL k was forwarded by
  router k-1, so that router, or a box on its outgoing link, is the censor:
  ``censor_hop = k - 1`` (1 = the vantage's first router);
- a packet's **sender hop** is read from its IP TTL: senders start from 64, 128
  or 255 (32 for a few), the arrival TTL is that minus the routers crossed, so a
  packet arriving with TTL t came from hop ``initial - t + 1``; a reset or DNS
  answer whose sender hop is smaller than the server's (its SYN-ACK, the genuine
  reply) was **injected** on the way, at that hop.

When k is the server's own hop, TTLs alone cannot tell the server from a box
right before it; then the fingerprint decides (injected at hop h: censor at h;
from the server's distance: the server itself answered so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from probe.trace.observations import Packet, Probe, Series, TraceObservation

INITIAL_TTLS = (32, 64, 128, 255)
_METHODS = {
    ("tls", "reset"): "tls.reset",
    ("tls", "silence"): "tls.timeout",
    ("http", "reset"): "http.reset",
    ("http", "silence"): "http.timeout",
    ("http", "blockpage"): "http.blockpage",
}


def sender_hop(ip_ttl: int) -> int | None:
    """The hop (1 = the vantage's first router) that sent a packet arriving with ``ip_ttl``."""
    if not 1 <= ip_ttl <= 255:
        return None
    initial = next(i for i in INITIAL_TTLS if i >= ip_ttl)
    return initial - ip_ttl + 1


@dataclass(frozen=True)
class Fingerprint:
    """The suspect packet (reset, DNS answer) beside the genuine one it imitates."""

    kind: str  # "reset" or "dns-reply"
    suspect: Packet
    reference: Packet | None  # the server's SYN-ACK, the resolver's genuine reply
    suspect_hop: int | None
    reference_hop: int | None
    injected: bool | None  # None: no reference to compare with


@dataclass(frozen=True)
class Split:
    """The ClientHello split inside the SNI: does the filter still trigger?"""

    segments: str | None  # "blocked", "passed", "inconclusive"; None: not tried
    records: str | None

    @property
    def reassembles(self) -> bool | None:
        """Whether the filter reassembles TCP segments (the split's main question)."""
        return {"blocked": True, "passed": False}.get(self.segments or "")


@dataclass(frozen=True)
class Location:
    interference: str | None  # the method, as in probe check (tls.reset, dns.injection, ...)
    protocol: str | None
    censor_hop: int | None
    censor_address: str | None
    trigger_ttl: int | None
    server_hop: int | None
    fingerprint: Fingerprint | None
    agree: bool | None  # the fingerprint's hop and the TTL method's censor hop match
    split: Split | None
    evidence: str


def locate(obs: TraceObservation) -> Location:
    """The decision for one trace; reads only the observation."""
    dns = _dns_interference(obs)
    if dns is not None:
        return dns
    if obs.address is None:  # nothing went to the site: no claim either way
        return Location(None, None, None, None, None, None, None, None, None, _untraced(obs))
    for protocol in ("tls", "http"):
        target, control = _pair(obs.baseline, protocol)
        if target is None or control is None or not target.probes or not control.probes:
            continue
        method = _METHODS.get((protocol, target.probes[0].outcome))
        if method is not None and control.probes[0].outcome == "reply":
            return _tcp(obs, protocol, method, target.probes[0])
    return Location(None, None, None, None, None, _server_hop(obs), None, None, None, _clean(obs))


# ----------------------------------------------------------------- TCP (TLS, HTTP)
def _tcp(obs: TraceObservation, protocol: str, method: str, baseline: Probe) -> Location:
    target, control = _pair(obs.ttl_series, protocol)
    server_hop = _server_hop(obs)
    k = _trigger_ttl(target, control, {baseline.outcome})
    fingerprint = _reset_fingerprint(baseline)
    censor_hop: int | None = None if k is None else k - 1
    if k is not None and server_hop is not None and k >= server_hop and fingerprint is not None:
        # the probe reached the server too: only the reset's TTL tells who sent it
        censor_hop = (
            fingerprint.suspect_hop if fingerprint.injected and fingerprint.suspect_hop else None
        )
    agree = _agree(fingerprint, censor_hop)
    address = _hop_address(obs, control, censor_hop)
    split = _split(obs, baseline.outcome) if protocol == "tls" else None
    location = Location(
        method, protocol, censor_hop, address, k, server_hop, fingerprint, agree, split, ""
    )
    return _with_evidence(location, obs)


def _trigger_ttl(target: Series | None, control: Series | None, bad: set[str]) -> int | None:
    if target is None:
        return None
    controls = {p.ttl: p for p in (control.probes if control else ())}
    for probe in sorted(target.probes, key=lambda p: p.ttl):
        twin = controls.get(probe.ttl)
        if probe.outcome in bad and (twin is None or twin.outcome not in bad):
            return probe.ttl
    return None


def _reset_fingerprint(probe: Probe) -> Fingerprint | None:
    reset = next((p for p in probe.packets if p.kind == "reset"), None)
    if reset is None:
        return None
    synack = next((p for p in probe.packets if p.kind == "syn-ack"), None)
    return _fingerprint("reset", reset, synack)


def _fingerprint(kind: str, suspect: Packet, reference: Packet | None) -> Fingerprint:
    hop = sender_hop(suspect.ip_ttl)
    ref_hop = None if reference is None else sender_hop(reference.ip_ttl)
    injected = None if hop is None or ref_hop is None else hop < ref_hop
    return Fingerprint(kind, suspect, reference, hop, ref_hop, injected)


def _agree(fingerprint: Fingerprint | None, censor_hop: int | None) -> bool | None:
    if fingerprint is None or censor_hop is None or not fingerprint.injected:
        return None
    return fingerprint.suspect_hop == censor_hop


def _split(obs: TraceObservation, blocked_outcome: str) -> Split | None:
    def result(probe: Probe | None) -> str | None:
        if probe is None:
            return None
        if probe.outcome == blocked_outcome:
            return "blocked"
        return "passed" if probe.outcome == "reply" else "inconclusive"

    if obs.split_segments is None and obs.split_records is None:
        return None
    return Split(result(obs.split_segments), result(obs.split_records))


# ----------------------------------------------------------------- DNS
def _dns_interference(obs: TraceObservation) -> Location | None:
    target, control = _pair(obs.ttl_series, "dns")
    if target is None or control is None:
        return None
    resolver_hop = next((p.ttl for p in control.probes if p.outcome == "reply"), None)
    # an answer to a query that the same TTL's control query shows died on the way
    k = None
    for probe in target.probes:
        twin = next((p for p in control.probes if p.ttl == probe.ttl), None)
        died = twin is not None and twin.outcome in ("time-exceeded", "silence")
        if probe.outcome == "reply" and died and (resolver_hop is None or probe.ttl < resolver_hop):
            k = probe.ttl
            break
    full_target, full_control = _pair(obs.baseline, "dns")
    conflicting = bool(
        full_target and full_target.probes and len(set(full_target.probes[0].answers)) > 1
    )
    if k is None and not conflicting:
        return None
    suspect = _first_reply(target.probes if k is None else (p for p in target.probes if p.ttl == k))
    if suspect is None and full_target and full_target.probes:
        suspect = _first_reply(full_target.probes)
    reference = _first_reply(full_control.probes if full_control else ())
    fingerprint = None if suspect is None else _fingerprint("dns-reply", suspect, reference)
    censor_hop = None if k is None else k - 1
    location = Location(
        "dns.injection",
        "dns",
        censor_hop,
        _hop_address(obs, control, censor_hop),
        k,
        resolver_hop,
        fingerprint,
        _agree(fingerprint, censor_hop),
        None,
        "",
    )
    return _with_evidence(location, obs)


def _first_reply(probes: Iterable[Probe]) -> Packet | None:
    return next((pk for p in probes for pk in p.packets if pk.kind == "dns-reply"), None)


# ----------------------------------------------------------------- shared
def _pair(series: Iterable[Series], protocol: str) -> tuple[Series | None, Series | None]:
    chosen = [s for s in series if s.protocol == protocol]
    target = next((s for s in chosen if not s.control), None)
    control = next((s for s in chosen if s.control), None)
    return target, control


def _server_hop(obs: TraceObservation) -> int | None:
    """The destination's hop: the first path probe it answered itself."""
    return next(
        (p.ttl for p in obs.path if p.responder == obs.address and p.outcome != "time-exceeded"),
        None,
    )


def _hop_address(obs: TraceObservation, control: Series | None, hop: int | None) -> str | None:
    """The address that answered as router ``hop``: from the path, else the control series."""
    if hop is None or hop < 1:
        return None
    for probes in (obs.path, control.probes if control else ()):
        for probe in probes:
            if probe.ttl == hop and probe.outcome == "time-exceeded":
                return probe.responder
    return None


def _clean(obs: TraceObservation) -> str:
    reached = _server_hop(obs)
    away = f"{reached} hop{'' if reached == 1 else 's'} away"
    where = f"{obs.address} ({away})" if reached else (obs.address or "the target")
    return (
        f"No interference: the ClientHello with SNI {obs.domain} and the request for Host "
        f"{obs.domain} reached {where} as the controls did, and DNS answers came only from "
        "the resolver."
    )


def _untraced(obs: TraceObservation) -> str:
    return (
        f"Not traced: {obs.resolver} gave no address for {obs.domain}, so no ClientHello or "
        "request was sent and the path was not tested (if that answer is the block, probe "
        "check names it); --control-resolver IP, a resolver beyond the censor, gives the "
        "address to trace."
    )


def _with_evidence(loc: Location, obs: TraceObservation) -> Location:
    from dataclasses import replace

    return replace(loc, evidence=evidence(loc, obs))


def evidence(loc: Location, obs: TraceObservation) -> str:
    """One sentence a reader can check against the hop list."""
    what = {
        "tls": f"a ClientHello with SNI {obs.domain}",
        "http": f"an HTTP request for Host {obs.domain}",
        "dns": f"a DNS query for {obs.domain}",
    }.get(loc.protocol or "", obs.domain)
    outcome = {
        "tls.reset": "a reset",
        "http.reset": "a reset",
        "tls.timeout": "silence",
        "http.timeout": "silence",
        "http.blockpage": "a blockpage",
        "dns.injection": "an answer",
    }.get(loc.interference or "", "interference")
    parts: list[str] = []
    if loc.trigger_ttl is not None:
        parts.append(
            f"{what} sent with TTL {loc.trigger_ttl} met {outcome} while the control with the "
            f"same TTL did not"
        )
    else:
        parts.append(f"{what} met {outcome} while the control did not")
    if loc.censor_hop is not None:
        at = f" ({loc.censor_address})" if loc.censor_address else ""
        parts.append(f"the censor is at hop {loc.censor_hop}{at}")
    fp = loc.fingerprint
    if fp is not None and fp.suspect_hop is not None and fp.reference_hop is not None:
        kind = "reset" if fp.kind == "reset" else "answer"
        ref = "the server's SYN-ACK" if fp.kind == "reset" else "the resolver's genuine reply"
        verdict = (
            f"injected at hop {fp.suspect_hop}"
            if fp.injected
            else "from the server's own distance: genuine"
        )
        parts.append(
            f"the {kind}'s IP TTL {fp.suspect.ip_ttl} puts its sender at hop {fp.suspect_hop}, "
            f"{ref} (TTL {fp.reference.ip_ttl if fp.reference else '?'}) at hop "
            f"{fp.reference_hop}: {verdict}"
        )
        if loc.agree is False:
            parts.append("the two methods disagree on the hop (see the hop list)")
    return "; ".join(parts) + "."
