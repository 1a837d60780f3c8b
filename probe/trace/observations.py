"""What a trace saw: frozen records, stored beside the measurement and re-located later.

They hold facts only (addresses, IP TTLs, outcomes per TTL); :mod:`probe.trace.locate`
turns them into the censor's hop, so stored traces can be re-read by a better
decision. :func:`probe.observations.to_dict` / ``from_dict`` convert them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Outcome = Literal[
    "time-exceeded",  # a router on the way answered: the probe died there
    "reply",  # the destination answered (SYN-ACK, server data, DNS answer)
    "blockpage",  # the destination's HTTP answer is a known blockpage
    "reset",  # a TCP RST for the connection
    "unreachable",  # ICMP destination unreachable
    "silence",  # nothing within the wait
    "error",  # the probe could not be sent (the local error in ``detail``)
]
Protocol = Literal["tls", "http", "dns"]


@dataclass(frozen=True)
class Packet:
    """The fingerprint of one received packet: what tells a forged one from a genuine one."""

    kind: str  # "syn-ack", "reset", "data", "ack", "dns-reply", "time-exceeded", "unreachable"
    source: str
    ip_ttl: int
    ip_id: int
    ip_df: bool
    tcp_flags: str | None = None  # scapy's letters, e.g. "RA"
    tcp_window: int | None = None
    tcp_seq: int | None = None
    tcp_ack: int | None = None
    tcp_options: tuple[str, ...] = ()
    payload_len: int = 0
    t_ms: float = 0.0  # since the probe was sent


@dataclass(frozen=True)
class Probe:
    """One send with IP TTL ``ttl`` (64 and up: not limited) and what came back."""

    ttl: int
    outcome: Outcome
    responder: str | None = None  # the router or host that answered
    rtt_ms: float | None = None
    packets: tuple[Packet, ...] = ()  # what came back for this flow (bounded)
    detail: str | None = None
    answers: tuple[tuple[str, ...], ...] = ()  # DNS: each reply's A addresses, in arrival order


@dataclass(frozen=True)
class Series:
    """The same payload sent with increasing TTL, one fresh connection (or query) each."""

    protocol: Protocol
    name: str  # the SNI, Host or qname carried
    control: bool
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class TraceObservation:
    """Everything one ``probe trace DOMAIN`` saw."""

    domain: str
    control_name: str
    started_at: dt.datetime
    duration_ms: float
    address: str | None = None  # the target address traced
    port: int | None = None  # the port the path was traced to
    resolver: str | None = None  # where the DNS probes went ("ip:port")
    path: tuple[Probe, ...] = ()  # TTL-limited SYNs, TTL 1 first
    baseline: tuple[Series, ...] = ()  # unlimited TTL: target and control, per protocol
    ttl_series: tuple[Series, ...] = ()  # the interfered protocol: target and control
    split_segments: Probe | None = None  # ClientHello split inside the SNI, two TCP segments
    split_records: Probe | None = None  # ... two TLS records in one segment
    errors: tuple[str, ...] = ()  # steps that could not run, one line each
