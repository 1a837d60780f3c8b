"""DoH check against an in-process HTTPS server on 127.0.0.1 with a trustme CA."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dns.message
import pytest
import trustme

from probe.checks.dns import parse_resolver, query
from probe.checks.doh import query_doh
from probe.errors import UsageError
from probe.failures import Failure
from probe.observations import DNSQuery
from tests.probe.checks import dnsserver as ds
from tests.probe.checks.tlsserver import Behaviour, TLSServer, default_authority

HTTPBehaviour = (
    ds.Answer
    | Literal["status500", "garbage", "wrong-id", "hang", "endless", "informational", "huge-head"]
)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    content_type: str
    query_id: int


class DoHServer:
    """Minimal HTTP/1.1 DoH server: one request per connection, behaviour by qname."""

    def __init__(self, context: ssl.SSLContext, behaviours: Mapping[str, HTTPBehaviour]) -> None:
        self.context = context
        self.behaviours = dict(behaviours)
        self.requests: list[SeenRequest] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dns-query"

    async def __aenter__(self) -> DoHServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            fields = (line.partition(":") for line in head[1:] if line)
            headers = {name.lower(): value.strip() for name, _, value in fields}
            wire = await reader.readexactly(int(headers.get("content-length", "0")))
            query_message = dns.message.from_wire(wire)
            self.requests.append(
                SeenRequest(method, path, headers.get("content-type", ""), query_message.id)
            )
            name = query_message.question[0].name.to_text(omit_final_dot=True)
            await self._respond(writer, query_message, self.behaviours[name])
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # client went away or refused our certificate
        finally:
            writer.close()

    async def _respond(
        self, writer: asyncio.StreamWriter, query_message: dns.message.Message, how: HTTPBehaviour
    ) -> None:
        if how == "hang":
            await asyncio.Event().wait()
        if how == "endless":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\n\r\n")
        if how in ("endless", "informational", "huge-head"):
            chunk = {
                "endless": b"\0" * 16384,
                "informational": b"HTTP/1.1 100 Continue\r\n\r\n" * 256,
                "huge-head": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 16000 + b"\r\n",
            }[how]
            if how == "huge-head":
                writer.write(chunk)
                chunk = b"X-Pad: " + b"a" * 16000 + b"\r\n"
            while True:  # until the client hangs up
                writer.write(chunk)
                await writer.drain()
        status, body = 200, b""
        if isinstance(how, ds.Answer):
            body = ds.build_reply(query_message, how, udp=False)
        elif how == "status500":
            status, body = 500, b"internal error"
        elif how == "garbage":
            body = b"<html>not dns</html>"
        elif how == "wrong-id":
            body = ds.step_wire(query_message, ds.WrongId(ds.Answer(("198.51.100.7",))))
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/dns-message\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


BEHAVIOURS: dict[str, HTTPBehaviour] = {
    "x.test": ds.Answer(("104.244.42.1", "2606:1f80:f000::1"), cnames=("edge.test",), ttl=60),
    "gone.test": ds.Answer(rcode="NXDOMAIN"),
    "status500.test": "status500",
    "garbage.test": "garbage",
    "wrong-id.test": "wrong-id",
    "hang.test": "hang",
    "endless.test": "endless",
    "informational.test": "informational",
    "huge-head.test": "huge-head",
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield str(path)


def server_context(ca: trustme.CA, *identities: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    return context


def doh(
    ca: trustme.CA,
    qname: str,
    qtype: str = "A",
    *,
    ca_bundle: str | None,
    timeout: float = 2.0,
    identity: str = "127.0.0.1",
) -> tuple[DNSQuery, float, list[SeenRequest]]:
    async def main() -> tuple[DNSQuery, float, list[SeenRequest]]:
        async with DoHServer(server_context(ca, identity), BEHAVIOURS) as server:
            resolver = parse_resolver(server.url)
            start = time.monotonic()
            result = await query(
                resolver,
                qname,
                qtype,
                origin="control",
                timeout=timeout,
                t0=start,
                ca_bundle=ca_bundle,
            )
            return result, time.monotonic() - start, server.requests

    return asyncio.run(main())


def test_answer(ca: trustme.CA, ca_bundle: str) -> None:
    result, _, requests = doh(ca, "x.test", ca_bundle=ca_bundle)
    assert result.failure is None
    assert result.origin == "control" and result.qname == "x.test"
    assert result.resolver.startswith("https://127.0.0.1:") and result.resolver.endswith(
        "/dns-query"
    )
    assert result.addresses == ("104.244.42.1",)
    assert result.replies[0].cnames == ("edge.test",)
    assert result.replies[0].records[1].ttl == 60
    assert result.replies[0].source == result.resolver
    assert result.elapsed_ms == result.replies[0].elapsed_ms > 0
    assert requests == [SeenRequest("POST", "/dns-query", "application/dns-message", 0)]


def test_aaaa(ca: trustme.CA, ca_bundle: str) -> None:
    result, _, _ = doh(ca, "x.test", "AAAA", ca_bundle=ca_bundle)
    assert result.failure is None
    assert result.addresses == ("2606:1f80:f000::1",)


def test_nxdomain(ca: trustme.CA, ca_bundle: str) -> None:
    result, _, _ = doh(ca, "gone.test", ca_bundle=ca_bundle)
    assert result.failure is Failure.DNS_NXDOMAIN
    assert [r.rcode for r in result.replies] == ["NXDOMAIN"]


@pytest.mark.parametrize("qname", ["status500.test", "garbage.test", "wrong-id.test"])
def test_bad_replies(ca: trustme.CA, ca_bundle: str, qname: str) -> None:
    result, elapsed, _ = doh(ca, qname, ca_bundle=ca_bundle)
    assert result.failure is Failure.DNS_BAD_REPLY
    assert result.replies == ()
    assert elapsed < 1.0


def test_endless_body_is_cut_and_rejected(ca: trustme.CA, ca_bundle: str) -> None:
    result, elapsed, _ = doh(ca, "endless.test", ca_bundle=ca_bundle)
    assert result.failure is Failure.DNS_BAD_REPLY
    assert elapsed < 1.5


def test_hanging_server_times_out(ca: trustme.CA, ca_bundle: str) -> None:
    result, elapsed, _ = doh(ca, "hang.test", ca_bundle=ca_bundle, timeout=0.5)
    assert result.failure is Failure.TIMEOUT
    assert result.replies == ()
    assert 0.45 < elapsed < 1.0
    assert result.elapsed_ms < 1000


def test_untrusted_certificate(ca: trustme.CA) -> None:
    result, elapsed, requests = doh(ca, "x.test", ca_bundle=None)
    assert result.failure is Failure.TLS_UNKNOWN_AUTHORITY
    assert requests == []
    assert elapsed < 1.0


def test_wrong_host_certificate(ca: trustme.CA, ca_bundle: str) -> None:
    result, _, _ = doh(ca, "x.test", ca_bundle=ca_bundle, identity="doh.example.test")
    assert result.failure is Failure.TLS_INVALID_HOSTNAME


def test_closed_port_is_connection_refused(ca_bundle: str) -> None:
    resolver = parse_resolver(
        f"https://127.0.0.1:{ds.free_port(kind=socket.SOCK_STREAM)}/dns-query"
    )
    result = asyncio.run(
        query_doh(resolver, "x.test", "A", origin="control", timeout=1, t0=0.0, ca_bundle=ca_bundle)
    )
    assert result.failure is Failure.CONNECTION_REFUSED


def test_given_context_is_used(ca: trustme.CA) -> None:
    async def main() -> DNSQuery:
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with DoHServer(server_context(ca, "127.0.0.1"), BEHAVIOURS) as server:
            return await query_doh(
                parse_resolver(server.url),
                "x.test",
                "A",
                origin="vantage",
                timeout=2,
                t0=time.monotonic(),
                context=client_context,  # trusts the CA although no ca_bundle is passed
            )

    assert asyncio.run(main()).failure is None


@pytest.mark.parametrize("qname", ["informational.test", "huge-head.test"])
def test_endless_response_heads_are_a_bad_reply_at_once(
    ca: trustme.CA, ca_bundle: str, qname: str
) -> None:
    # Endless 100 Continue (or one endless head): the plain HTTP path's limits,
    # 16 informational responses and 256 KiB before the head; was: the deadline.
    cpu = time.process_time()
    result, elapsed, _ = doh(ca, qname, ca_bundle=ca_bundle, timeout=4.0)
    spent = time.process_time() - cpu
    assert result.failure is Failure.DNS_BAD_REPLY and not result.replies
    assert elapsed < 4.0 / 2 and spent < 1.0, (elapsed, spent)


@pytest.mark.parametrize(
    "behaviour", [Behaviour.HELLO_REQUESTS, Behaviour.ENDLESS_HELLO, Behaviour.TICKETS]
)
def test_endless_tls_records_are_a_protocol_error_at_once(behaviour: Behaviour) -> None:
    # The handshake and post-handshake byte limits of the plain TLS path; was: the deadline.
    with TLSServer(behaviour, names=("127.0.0.1",)) as server:
        resolver = parse_resolver(f"https://127.0.0.1:{server.port}/dns-query")
        start = time.monotonic()
        result = asyncio.run(
            query_doh(
                resolver, "x.test", "A", origin="control", timeout=4.0, t0=start,
                ca_bundle=default_authority().bundle,
            )
        )  # fmt: skip
        elapsed = time.monotonic() - start
    assert result.failure is Failure.TLS_PROTOCOL_ERROR, result
    assert elapsed < 4.0 / 2, elapsed


def test_unreadable_ca_bundle_is_usage_error(tmp_path: Path) -> None:
    resolver = parse_resolver("https://127.0.0.1:1/dns-query")
    with pytest.raises(UsageError):
        asyncio.run(
            query_doh(
                resolver,
                "x.test",
                "A",
                origin="control",
                timeout=1,
                t0=0.0,
                ca_bundle=str(tmp_path / "missing.pem"),
            )
        )
