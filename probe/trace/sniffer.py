"""Raw sockets that read copies of every ICMP, TCP and UDP packet arriving at this host.

The kernel keeps handling the connections (our probes use ordinary kernel
sockets), so nothing has to stop it from answering packets it does not
expect; a raw ``AF_INET`` socket of a protocol gets a copy of each incoming
packet of that protocol, header included. Reading is bounded: at most
:data:`MAX_READS` packets per :meth:`Sniffer.collect`, each dissected and
dropped unless it belongs to the probe's flow, so a flood of unrelated or
forged packets costs time up to the deadline and no memory.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Collection

from probe.errors import ExitStatus, ProbeError
from probe.trace.wire import ICMP, TCP, UDP, Flow, Received, dissect, flow_of, load

MAX_READS = 20_000
_RCVBUF = 1 << 20


class NoRawSockets(ProbeError):
    """The trace needs CAP_NET_RAW (root) and does not have it."""

    exit_status = ExitStatus.PRIVILEGE


def require_raw_sockets() -> None:
    """Fail with one line, before any probing, when raw sockets cannot be opened."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        raise NoRawSockets(
            "probe trace needs raw sockets: run it as root or give the interpreter CAP_NET_RAW"
        ) from None


class Sniffer:
    """Opened before a probe is sent, so no answer can be missed; closed after it."""

    def __init__(self, protocols: tuple[int, ...] = (ICMP, TCP, UDP)) -> None:
        load()
        self._socks: list[socket.socket] = []
        try:
            for proto in protocols:
                sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.setblocking(False)
                self._socks.append(sock)
        except PermissionError:
            self.close()
            require_raw_sockets()
            raise

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks.clear()

    def collect(
        self,
        flows: Collection[Flow],
        deadline: float,
        done: Callable[[list[tuple[float, Received]]], bool] | None = None,
        limit: int = 64,
    ) -> list[tuple[float, Received]]:
        """Packets answering one of ``flows`` (or ICMP errors quoting one), with their
        monotonic arrival time, until ``deadline``, until ``done`` says the probe is
        decided, or until ``limit`` are kept. Only those are dissected (scapy); the
        rest is dropped after a look at their addresses and ports."""
        wanted = set(flows)
        kept: list[tuple[float, Received]] = []
        reads = 0
        while reads < MAX_READS and len(kept) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # wake at least every 20 ms, so ``done`` can end the wait between packets
            ready, _, _ = select.select(self._socks, [], [], min(remaining, 0.02))
            for sock in ready:
                reads += self._drain(sock, wanted, kept, limit, deadline)
            if done is not None and done(kept):
                break
        return kept

    @staticmethod
    def _drain(
        sock: socket.socket,
        wanted: set[Flow],
        kept: list[tuple[float, Received]],
        limit: int,
        deadline: float,
    ) -> int:
        reads = 0
        while reads < 256 and time.monotonic() < deadline:
            try:
                raw = sock.recv(65535)
            except OSError:  # nothing left (BlockingIOError) or the socket failed
                break
            reads += 1
            if flow_of(raw) not in wanted or len(kept) >= limit:
                continue
            received = dissect(raw)
            if received is not None:
                kept.append((time.monotonic(), received))
        return reads
