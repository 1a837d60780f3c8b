"""probe.checks.tcp against real loopback sockets (run inside ``unshare --net``)."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from probe.checks.tcp import Connection, connect
from probe.failures import Failure
from probe.observations import TCPObservation

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def dial(
    address: str, port: int, *, timeout: float = 2.0, allow_loopback: bool = True
) -> tuple[TCPObservation, Connection | None]:
    return run(
        connect(address, port, timeout=timeout, t0=time.monotonic(), allow_loopback=allow_loopback)
    )


async def connect_and_close(address: str, port: int) -> TCPObservation:
    obs, conn = await connect(address, port, timeout=2, t0=time.monotonic(), allow_loopback=True)
    assert conn is not None, obs
    await conn.close()
    return obs


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    yield sock
    sock.close()


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback server that echoes one message per connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_connect_ok_gives_a_working_connection(echo_port: int) -> None:
    async def scenario() -> tuple[TCPObservation, bytes]:
        t0 = time.monotonic() - 1.0  # the domain check started a second ago
        obs, conn = await connect("127.0.0.1", echo_port, timeout=2, t0=t0, allow_loopback=True)
        assert conn is not None
        conn.writer.write(b"ping")
        await conn.writer.drain()
        reply = await asyncio.wait_for(conn.reader.readexactly(4), 2)
        await conn.close()
        assert conn.writer.is_closing()
        return obs, reply

    obs, reply = run(scenario())
    assert obs.ok and obs.failure is None
    assert (obs.address, obs.port) == ("127.0.0.1", echo_port)
    assert reply == b"ping"
    assert 1000 <= obs.t_ms < 1500
    assert 0 <= obs.elapsed_ms < 1000


def test_refused_on_a_closed_port() -> None:
    obs, conn = dial("127.0.0.1", closed_port())
    assert obs.failure is Failure.CONNECTION_REFUSED
    assert conn is None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "224.0.0.1", "169.254.1.1", "fe80::1"],
)
def test_undialable_addresses_are_never_dialled(address: str, listener: socket.socket) -> None:
    obs, conn = dial(address, listener.getsockname()[1], allow_loopback=False)
    assert obs.failure is Failure.ADDRESS_UNUSABLE
    assert obs.elapsed_ms == 0
    assert conn is None
    with pytest.raises(TimeoutError):  # nothing reached the listener
        listener.accept()


def test_non_ip_address_is_unusable() -> None:
    obs, conn = dial("example.test", 443)
    assert obs.failure is Failure.ADDRESS_UNUSABLE
    assert conn is None


def test_allow_loopback_does_not_allow_the_unspecified_address(listener: socket.socket) -> None:
    # Linux delivers a connect to 0.0.0.0 to the local host: it must stay forbidden.
    obs, conn = dial("0.0.0.0", listener.getsockname()[1], allow_loopback=True)
    assert obs.failure is Failure.ADDRESS_UNUSABLE
    assert conn is None


def test_allow_loopback_dials_loopback(listener: socket.socket) -> None:
    assert run(connect_and_close("127.0.0.1", listener.getsockname()[1])).ok
    accepted, _ = listener.accept()
    accepted.close()


def test_ipv6_loopback() -> None:
    try:
        server = socket.socket(socket.AF_INET6)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback in this namespace")
    with server:
        server.listen(1)
        port = server.getsockname()[1]
        for address in ("::1", "[::1]"):
            obs = run(connect_and_close(address, port))
            assert obs.ok, obs
            assert obs.address == address


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port whose accept queue is full, so the kernel drops further SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    clients: list[socket.socket] = []
    try:
        for _ in range(16):
            client = socket.socket()
            client.setblocking(False)
            clients.append(client)
            client.connect_ex(("127.0.0.1", port))
            _, writable, _ = select.select([], [client], [], 0.1)
            if not writable:  # this SYN was dropped: the queue is full
                yield port
                return
        pytest.skip("could not fill the accept queue")
    finally:
        for client in clients:
            client.close()
        server.close()


def test_hanging_connect_times_out_on_time(stalled_port: int) -> None:
    start = time.monotonic()
    obs, conn = dial("127.0.0.1", stalled_port, timeout=0.4)
    took = time.monotonic() - start
    assert obs.failure is Failure.TIMEOUT
    assert conn is None
    assert 0.4 <= took < 0.6
    assert 390 <= obs.elapsed_ms < 600


def test_close_is_idempotent_and_never_raises(listener: socket.socket) -> None:
    async def scenario() -> None:
        _, conn = await connect(
            "127.0.0.1",
            listener.getsockname()[1],
            timeout=2,
            t0=time.monotonic(),
            allow_loopback=True,
        )
        assert conn is not None
        accepted, _ = listener.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()  # the peer resets the connection before we close it
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await conn.close()
        await conn.close()
        assert time.monotonic() - start < 0.6

    run(scenario())
