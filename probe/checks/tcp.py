"""TCP connect to one address: the first step of every endpoint check.

A connect distinguishes IP blocking (timeout when SYNs are dropped, reset or
refused when they are answered by a middlebox) from later, content-based
blocking.  The open connection is handed on to the TLS and HTTP steps so the
same 5-tuple is measured throughout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from probe import netaddr
from probe.checks.errors import failure_from_exception, forget_traceback
from probe.checks.timer import within
from probe.failures import Failure
from probe.observations import TCPObservation

CLOSE_TIMEOUT_S = 0.1
"""How long :meth:`Connection.close` waits for a graceful close (TLS close_notify)
before aborting: a server that never answers must not slow the check down."""


@dataclass(eq=False)
class Connection:
    """An open TCP connection (possibly upgraded to TLS in place)."""

    address: str
    port: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None:
        """Close gracefully if the peer cooperates quickly, else abort; never raises."""
        transport = self.writer.transport
        if transport.is_closing():  # already closed, e.g. by a failed TLS upgrade
            transport.abort()
            return
        closed = False
        try:
            # A plain connection (the stream still reading the socket itself: no
            # TLS, not even a failed upgrade) with nothing left to send closes
            # without the peer's help; TLS waits for the peer's close_notify.
            prompt = (
                isinstance(transport.get_protocol(), asyncio.StreamReaderProtocol)
                and transport.get_extra_info("sslcontext") is None
                and transport.get_write_buffer_size() == 0
            )
            self.writer.close()
            if prompt:
                await self.writer.wait_closed()
            else:
                with within(CLOSE_TIMEOUT_S):
                    await self.writer.wait_closed()
            closed = True
        except Exception:  # a failed close is no observation: the check is over
            pass
        finally:
            if not closed:
                transport.abort()


def elapsed_ms(start: float) -> float:
    return (time.monotonic() - start) * 1000


async def open_connection(address: str, port: int, timeout: float | None) -> Connection:
    """Dial without any policy check; raises like asyncio.open_connection.

    Only for addresses already vetted by :func:`connect` (the TLS module
    re-dials the same endpoint to capture a rejected certificate chain).
    ``timeout`` None: the caller's own deadline bounds the dial (one timer
    fewer, as every timer costs the loop a little).
    """
    if timeout is None:
        reader, writer = await asyncio.open_connection(address.strip("[]"), port)
    else:
        with within(timeout):
            reader, writer = await asyncio.open_connection(address.strip("[]"), port)
    return Connection(address, port, reader, writer)


async def connect(
    address: str, port: int, *, timeout: float, t0: float, allow_loopback: bool = False
) -> tuple[TCPObservation, Connection | None]:
    """Open a TCP connection within ``timeout`` seconds; never raises for network errors.

    ``t0`` is the monotonic start of the domain's check.  Addresses the probe
    must not dial (loopback, unspecified, multicast, link-local, non-IP) are
    not dialled: the observation says ``address_unusable`` with elapsed 0.
    ``allow_loopback`` exists for loopback tests only; the CLI never sets it.
    The Connection is returned only when the observation is ok.
    """
    start = time.monotonic()
    t_ms = (start - t0) * 1000
    if not netaddr.is_dialable(address, allow_loopback=allow_loopback):
        return TCPObservation(address, port, t_ms, 0.0, Failure.ADDRESS_UNUSABLE), None
    try:
        conn = await open_connection(address, port, timeout)
    except Exception as exc:
        failure = failure_from_exception(exc)
        forget_traceback(exc)
        return TCPObservation(address, port, t_ms, elapsed_ms(start), failure), None
    return TCPObservation(address, port, t_ms, elapsed_ms(start), None), conn
