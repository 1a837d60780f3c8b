"""The procedure of one trace: DNS, baselines, path, TTL-limited trigger, split ClientHello.

Every step is bounded by ``wait`` per probe (the path and the DNS series run
their probes in parallel batches), so a path of silent hops costs a few
waits, not one per hop. A step that cannot run is recorded in ``errors`` and
the trace goes on with what it has.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probe.trace import dnsprobe, payloads, probes
from probe.trace.observations import Probe, Protocol, Series, TraceObservation
from probe.trace.sniffer import require_raw_sockets
from probe.trace.wire import load

TLS_PORT, HTTP_PORT = 443, 80


@dataclass(frozen=True)
class TraceOptions:
    resolver: tuple[str, int]  # where the DNS probes go (IPv4, port)
    control_name: str = "example.com"  # control SNI, Host and qname
    ca_bundle: str | None = None
    max_ttl: int = 30
    wait: float = 1.0  # per probe: how long silence must last to count


def trace(domain: str, options: TraceOptions) -> TraceObservation:
    require_raw_sockets()
    load()
    started_at = dt.datetime.now(dt.UTC)
    start = time.monotonic()
    errors: list[str] = []
    names = ((domain, False), (options.control_name, True))
    dns_full, dns_series = dnsprobe.series(options.resolver, names, options.max_ttl, options.wait)
    dns_series = tuple(_trim(s, dns_series) for s in dns_series)
    address = _address(dns_full)
    baseline: list[Series] = list(dns_full)
    ttl_series: list[Series] = list(dns_series)
    path: tuple[Probe, ...] = ()
    split_segments = split_records = None
    port: int | None = None
    if address is None:
        errors.append(f"{domain}: no A record from {_label(options.resolver)}")
    else:
        blockpage = _blockpage_check()
        senders: dict[Protocol, tuple[int, Callable[[str], list[bytes]]]] = {
            "tls": (TLS_PORT, lambda name: [payloads.client_hello(name, options.ca_bundle).data]),
            "http": (HTTP_PORT, lambda name: [payloads.http_request(name)]),
        }
        interfered: Protocol | None = None
        for protocol, (proto_port, build) in senders.items():
            check = blockpage if protocol == "http" else None
            pair = [
                Series(
                    protocol,
                    name,
                    control,
                    (_send(address, proto_port, probes.FULL_TTL, build(name), options, check),),
                )
                for name, control in names
            ]
            baseline += pair
            bad = pair[0].probes[0].outcome in ("reset", "silence", "blockpage")
            if interfered is None and bad and pair[1].probes[0].outcome == "reply":
                interfered = protocol
        port = senders[interfered][0] if interfered else TLS_PORT
        path = probes.path(address, port, options.max_ttl, options.wait)
        if interfered is not None:
            _, build = senders[interfered]
            check = blockpage if interfered == "http" else None
            last = _destination_hop(path, address) or options.max_ttl
            sent: dict[str, list[Probe]] = {name: [] for name, _ in names}
            for ttl in range(1, last + 1):
                for name, _ in reversed(names):  # the control first: a residual block
                    # set off by the target cannot spoil the control with the same TTL
                    sent[name].append(_send(address, port, ttl, build(name), options, check))
            ttl_series += [
                Series(interfered, name, control, tuple(sent[name])) for name, control in names
            ]
        if interfered == "tls":
            hello = payloads.client_hello(domain, options.ca_bundle).data
            split_segments = _send(
                address, port, probes.FULL_TTL, payloads.split_segments(hello, domain), options
            )
            split_records = _send(
                address, port, probes.FULL_TTL, [payloads.split_records(hello, domain)], options
            )
    return TraceObservation(
        domain=domain,
        control_name=options.control_name,
        started_at=started_at,
        duration_ms=round((time.monotonic() - start) * 1000, 1),
        address=address,
        port=port,
        resolver=_label(options.resolver),
        path=path,
        baseline=tuple(baseline),
        ttl_series=tuple(ttl_series),
        split_segments=split_segments,
        split_records=split_records,
        errors=tuple(errors),
    )


def _send(
    address: str,
    port: int,
    ttl: int,
    parts: Sequence[bytes],
    options: TraceOptions,
    check: Callable[[bytes], str | None] | None = None,
) -> Probe:
    return probes.payload(address, port, ttl, parts, options.wait, check)


def _label(resolver: tuple[str, int]) -> str:
    return f"{resolver[0]}:{resolver[1]}"


def _trim(series: Series, all_series: tuple[Series, ...]) -> Series:
    """Drop the TTLs past the resolver's hop (the control's first answer): they add nothing."""
    control = next((s for s in all_series if s.control), None)
    reached = next(
        (p.ttl for p in (control.probes if control else ()) if p.outcome == "reply"), None
    )
    if reached is None:
        return series
    return Series(
        series.protocol,
        series.name,
        series.control,
        tuple(p for p in series.probes if p.ttl <= reached),
    )


def _address(dns_full: tuple[Series, ...]) -> str | None:
    """The target's address from the unlimited query: the reply from the same distance as
    the control's (the genuine one, when an injector answered first), else the last."""
    target = next((s for s in dns_full if not s.control), None)
    control = next((s for s in dns_full if s.control), None)
    if target is None or not target.probes:
        return None
    probe = target.probes[0]
    replies = [
        (pk, ans)
        for pk, ans in zip(
            [pk for pk in probe.packets if pk.kind == "dns-reply"], probe.answers, strict=False
        )
        if ans
    ]
    if not replies:
        return None
    reference = next(
        (
            pk.ip_ttl
            for pk in (control.probes[0].packets if control and control.probes else ())
            if pk.kind == "dns-reply"
        ),
        None,
    )
    genuine = [ans for pk, ans in replies if pk.ip_ttl == reference]
    return (genuine or [replies[-1][1]])[0][0]


def _destination_hop(path: tuple[Probe, ...], address: str) -> int | None:
    return next(
        (p.ttl for p in path if p.responder == address and p.outcome != "time-exceeded"), None
    )


def _blockpage_check() -> Callable[[bytes], str | None]:
    from probe.blockpages import load_fingerprints

    fingerprints = [fp for fp in load_fingerprints() if fp.kind in ("body", "location")]

    def check(body: bytes) -> str | None:
        text = body.decode("utf-8", "replace").casefold()
        return next((fp.id for fp in fingerprints if fp.pattern.casefold() in text), None)

    return check
