"""probe.checks.tls against the loopback TLSServer (run inside ``unshare --net``)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import resource
import ssl
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from probe.checks import tls as tls_module
from probe.checks.http import fetch
from probe.checks.tcp import connect
from probe.checks.tls import (
    HANDSHAKE_LIMIT,
    certificate,
    handshake,
    hashed_system_store,
    make_context,
    probe_tls,
)
from probe.errors import UsageError
from probe.failures import Failure
from probe.observations import TCPObservation, TLSObservation
from tests.probe.checks.tlsserver import (
    WRONG_NAME,
    Behaviour,
    TLSServer,
    default_authority,
    echo,
    hold,
    leaf_der,
    parse_sni,
    untrusted_authority,
)

T = TypeVar("T")
NAME = "example.test"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def context() -> ssl.SSLContext:
    return make_context(default_authority().bundle)


def probe(
    server: TLSServer,
    server_name: str = NAME,
    *,
    timeout: float = 3.0,
    ctx: ssl.SSLContext | None = None,
) -> tuple[TCPObservation, TLSObservation | None]:
    return run(
        probe_tls(
            server.address,
            server.port,
            server_name,
            context=ctx or context(),
            timeout=timeout,
            t0=time.monotonic(),
            allow_loopback=True,
        )
    )


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------ success


def test_successful_handshake_records_the_session_and_the_whole_chain() -> None:
    with TLSServer() as server:
        tcp, tls = probe(server)
    assert tcp.ok
    assert tls is not None and tls.ok, tls
    assert (tls.address, tls.port, tls.server_name) == (server.address, server.port, NAME)
    assert tls.version == "TLSv1.3"
    assert tls.cipher and tls.cipher.startswith("TLS_")
    assert tls.alpn == "http/1.1"
    assert tls.t_ms >= tcp.t_ms + tcp.elapsed_ms - 1
    assert 0 < tls.elapsed_ms < 2000

    leaf, intermediate = tls.chain  # the server sends leaf + intermediate
    assert leaf.sha256 == sha256(leaf_der(server.certs[Behaviour.NORMAL]))
    assert leaf.sans == (NAME,)
    assert leaf.issuer == intermediate.subject
    assert "O=trustme" in leaf.subject
    for cert in tls.chain:
        assert RFC3339.match(cert.not_before) and RFC3339.match(cert.not_after)
        assert re.fullmatch(r"[0-9a-f]{64}", cert.sha256)


def test_the_connection_carries_tls_after_the_handshake() -> None:
    async def scenario(server: TLSServer) -> bytes:
        conn_obs, conn = await connect(
            server.address, server.port, timeout=2, t0=time.monotonic(), allow_loopback=True
        )
        assert conn is not None, conn_obs
        tls = await handshake(
            conn, server_name=NAME, context=context(), timeout=2, t0=time.monotonic()
        )
        assert tls.ok, tls
        conn.writer.write(b"hello over tls")
        await conn.writer.drain()
        reply = await asyncio.wait_for(conn.reader.readexactly(14), 2)
        await conn.close()
        return reply

    with TLSServer(app=echo) as server:
        assert run(scenario(server)) == b"hello over tls"


def test_no_alpn_when_the_server_does_not_negotiate_it() -> None:
    with TLSServer(alpn=()) as server:
        _, tls = probe(server)
    assert tls is not None and tls.ok and tls.alpn is None


def test_h2_is_offered_first() -> None:
    with TLSServer(alpn=("h2", "http/1.1")) as server:
        _, tls = probe(server)
    assert tls is not None and tls.alpn == "h2"


def test_ip_sans_are_recorded() -> None:
    with TLSServer(names=(NAME, "127.0.0.1")) as server:
        _, tls = probe(server)
    assert tls is not None and tls.ok
    assert tls.chain[0].sans == (NAME, "127.0.0.1")


def test_close_is_bounded_when_the_server_ignores_close_notify() -> None:
    async def scenario(server: TLSServer) -> float:
        _, conn = await connect(
            server.address, server.port, timeout=2, t0=time.monotonic(), allow_loopback=True
        )
        assert conn is not None
        tls = await handshake(
            conn, server_name=NAME, context=context(), timeout=2, t0=time.monotonic()
        )
        assert tls.ok
        start = time.monotonic()
        await conn.close()
        return time.monotonic() - start

    with TLSServer(app=hold) as server:
        assert run(scenario(server)) < 0.6


# --------------------------------------------------------- certificate failures


@pytest.mark.parametrize(
    ("behaviour", "failure"),
    [
        (Behaviour.UNTRUSTED, Failure.TLS_UNKNOWN_AUTHORITY),
        (Behaviour.WRONG_NAME, Failure.TLS_INVALID_HOSTNAME),
        (Behaviour.EXPIRED, Failure.TLS_EXPIRED_CERTIFICATE),
    ],
)
def test_certificate_failures_still_record_the_chain(
    behaviour: Behaviour, failure: Failure
) -> None:
    with TLSServer(behaviour) as server:
        tcp, tls = probe(server)
    assert tcp.ok
    assert tls is not None
    assert tls.failure is failure
    assert tls.failure.is_tls_certificate
    assert tls.version is None and tls.cipher is None
    assert len(tls.chain) == 2
    assert tls.chain[0].sha256 == sha256(leaf_der(server.certs[behaviour]))
    # The chain was captured by a second handshake with the same SNI.
    assert server.server_names == [NAME, NAME]


def test_wrong_name_chain_shows_the_presented_name() -> None:
    with TLSServer(Behaviour.WRONG_NAME) as server:
        _, tls = probe(server)
    assert tls is not None and tls.chain[0].sans == (WRONG_NAME,)


def test_expired_chain_dates_are_in_the_past() -> None:
    with TLSServer(Behaviour.EXPIRED) as server:
        _, tls = probe(server)
    assert tls is not None
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    assert tls.chain[0].not_after < now


def test_the_ca_bundle_is_what_makes_the_test_ca_trusted() -> None:
    with TLSServer() as server:
        _, tls = probe(server, ctx=make_context())
    assert tls is not None and tls.failure is Failure.TLS_UNKNOWN_AUTHORITY
    assert len(tls.chain) == 2


def test_verify_false_accepts_any_certificate() -> None:
    with TLSServer(Behaviour.UNTRUSTED) as server:
        _, tls = probe(server, ctx=make_context(verify=False))
    assert tls is not None and tls.ok
    assert len(tls.chain) == 2


# ---------------------------------------------------------- transport failures


@pytest.mark.parametrize(
    ("behaviour", "failure"),
    [
        (Behaviour.RESET, Failure.CONNECTION_RESET),
        (Behaviour.CLOSE, Failure.EOF),
        (Behaviour.GARBAGE, Failure.TLS_PROTOCOL_ERROR),
    ],
)
def test_handshake_interference(behaviour: Behaviour, failure: Failure) -> None:
    with TLSServer(behaviour) as server:
        tcp, tls = probe(server)
    assert tcp.ok
    assert tls is not None
    assert tls.failure is failure
    assert tls.chain == ()
    assert server.server_names == [NAME]  # the server did read our ClientHello


def test_a_server_that_never_answers_times_out_on_time() -> None:
    with TLSServer(Behaviour.HANG) as server:
        start = time.monotonic()
        tcp, tls = probe(server, timeout=0.5)
        took = time.monotonic() - start
    assert tcp.ok
    assert tls is not None and tls.failure is Failure.TIMEOUT
    assert took < 0.5 + 0.2
    assert 0.4 * 1000 <= tls.elapsed_ms < 700


def test_handshake_with_no_time_left_is_a_timeout() -> None:
    async def scenario(server: TLSServer) -> TLSObservation:
        _, conn = await connect(
            server.address, server.port, timeout=2, t0=time.monotonic(), allow_loopback=True
        )
        assert conn is not None
        try:
            return await handshake(
                conn, server_name=NAME, context=context(), timeout=0, t0=time.monotonic()
            )
        finally:
            await conn.close()

    with TLSServer() as server:
        assert run(scenario(server)).failure is Failure.TIMEOUT


def test_probe_tls_without_tcp_has_no_tls_observation() -> None:
    with TLSServer() as server:
        port = server.port
    tcp, tls = run(
        probe_tls(
            "127.0.0.1",
            port,
            NAME,
            context=context(),
            timeout=1,
            t0=time.monotonic(),
            allow_loopback=True,
        )
    )
    assert tcp.failure is Failure.CONNECTION_REFUSED
    assert tls is None


def test_probe_tls_never_dials_loopback_by_default() -> None:
    with TLSServer() as server:
        tcp, tls = run(
            probe_tls(
                server.address, server.port, NAME, context=context(), timeout=1, t0=time.monotonic()
            )
        )
        assert server.accepted == 0
    assert tcp.failure is Failure.ADDRESS_UNUSABLE and tls is None


# --------------------------------------------------------------- SNI filtering


def test_sni_differential_target_reset_control_ok() -> None:
    names = ("blocked.test", "control.test")
    with TLSServer(names=names, sni_behaviours={"blocked.test": Behaviour.RESET}) as server:
        _, target = probe(server, "blocked.test")
        _, control = probe(server, "control.test")
    assert target is not None and target.failure is Failure.CONNECTION_RESET
    assert control is not None and control.ok
    assert server.server_names == ["blocked.test", "control.test"]


def test_parse_sni_rejects_non_tls() -> None:
    with pytest.raises(ValueError):
        parse_sni(b"GET / HTTP/1.1\r\n\r\n")


# ------------------------------------------------------------------ contexts


@pytest.mark.parametrize(
    "content",
    [
        None,
        b"",
        b"not a certificate\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_a_bad_ca_bundle_is_a_usage_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as info:
        make_context(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot read CA bundle {path}: ")
    assert "\n" not in message


def test_contexts_are_cached_per_settings() -> None:
    bundle = default_authority().bundle
    assert make_context(bundle) is make_context(bundle)
    assert make_context(bundle) is not make_context(bundle, verify=False)
    assert make_context(bundle) is not make_context(bundle, alpn=("http/1.1",))
    unverified = make_context(verify=False)
    assert unverified.verify_mode is ssl.CERT_NONE and not unverified.check_hostname
    verified = make_context(bundle)
    assert verified.verify_mode is ssl.CERT_REQUIRED and verified.check_hostname


def test_unverified_context_loads_no_trust_store() -> None:
    """Loading the system store is the costly part of a context (tens of ms; more
    on a Pi); a context that never verifies must not pay for it, whatever bundle."""
    assert make_context(verify=False).cert_store_stats()["x509_ca"] == 0
    assert make_context("/nonexistent.pem", verify=False) is make_context(verify=False)


@pytest.fixture
def system_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A system trust store of our own: the test CA as bundle, in ``tmp_path``."""
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text(Path(default_authority().bundle).read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    tls_module._verified_context.cache_clear()
    yield tmp_path
    tls_module._verified_context.cache_clear()


def test_hashed_system_store_is_read_lazily_and_still_verifies(system_store: Path) -> None:
    """Debian's layout (bundle inside a c_rehash'ed directory): the directory is
    used, no certificate is parsed up front, and verification still works."""
    subprocess.run(["openssl", "rehash", str(system_store)], check=True, capture_output=True)
    assert hashed_system_store() == str(system_store.resolve())
    ctx = make_context()
    assert ctx.cert_store_stats()["x509_ca"] == 0
    with TLSServer() as server:
        _, tls = probe(server, ctx=ctx)
    assert tls is not None and tls.ok, tls
    with TLSServer() as server:
        _, tls = probe(server, ctx=make_context(str(untrusted_authority().bundle)))
    assert tls is not None and tls.ok  # a --ca-bundle adds to the store


def test_unhashed_system_store_is_loaded_whole(system_store: Path) -> None:
    assert hashed_system_store() is None  # no hash links: the bundle is read as before
    assert make_context().cert_store_stats()["x509_ca"] == 1
    with TLSServer() as server:
        _, tls = probe(server, ctx=make_context())
    assert tls is not None and tls.ok, tls


def test_certificate_keeps_the_fingerprint_of_an_unparsable_certificate() -> None:
    cert = certificate(b"\x30\x03junk")
    assert cert.sha256 == sha256(b"\x30\x03junk")
    assert (cert.subject, cert.sans, cert.not_after) == ("", (), "")


# ------------------------------------------------------------ hostile servers


def thread_cpu() -> float:
    """CPU seconds of this thread (the event loop's; the servers run in others)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def test_hello_request_flood_is_cut_by_the_handshake_limit() -> None:
    # OpenSSL ignores HelloRequest mid-handshake: without a byte limit the client
    # parses them at wire speed until the deadline (a core spent for nothing).
    with TLSServer(Behaviour.HELLO_REQUESTS) as server:
        cpu = thread_cpu()
        tcp, tls = probe(server, timeout=5.0)
        spent = thread_cpu() - cpu
    assert tcp.ok and tls is not None
    assert tls.failure is Failure.TLS_PROTOCOL_ERROR
    assert tls.elapsed_ms < 5000 / 2 and spent < 5.0 / 2, (tls.elapsed_ms, spent)


def test_endless_server_hello_is_a_protocol_error_at_once() -> None:
    with TLSServer(Behaviour.ENDLESS_HELLO) as server:
        _, tls = probe(server, timeout=5.0)
    assert tls is not None and tls.failure is Failure.TLS_PROTOCOL_ERROR
    assert tls.elapsed_ms < 5000 / 2


def test_trickled_server_hello_ends_at_the_deadline_without_spinning() -> None:
    with TLSServer(Behaviour.TRICKLE) as server:
        cpu = thread_cpu()
        _, tls = probe(server, timeout=1.5)
        spent = thread_cpu() - cpu
    assert tls is not None and tls.failure is Failure.TIMEOUT
    assert tls.elapsed_ms < 1500 + 1000
    assert spent < 0.5, spent


def test_a_handshake_after_the_limit_is_lifted_carries_tls() -> None:
    # The meter stays between socket and TLS after the handshake: data still flows.
    with TLSServer(app=echo) as server:

        async def go() -> bytes:
            _, conn = await connect(
                server.address, server.port, timeout=3, t0=time.monotonic(), allow_loopback=True
            )
            assert conn is not None
            tls = await handshake(
                conn, server_name=NAME, context=context(), timeout=3, t0=time.monotonic()
            )
            assert tls.ok, tls
            payload = b"x" * (HANDSHAKE_LIMIT + 1000)  # more than the handshake limit
            conn.writer.write(payload)
            data = await asyncio.wait_for(conn.reader.readexactly(len(payload)), 5)
            await conn.close()
            return data

        assert len(run(go())) == HANDSHAKE_LIMIT + 1000


@pytest.mark.parametrize("behaviour", [Behaviour.HELLO_REQUESTS_AFTER, Behaviour.TICKETS])
def test_endless_records_after_the_handshake_are_a_protocol_error_at_once(
    behaviour: Behaviour,
) -> None:
    # A complete handshake, then HelloRequests (TLS 1.2) or session tickets (TLS 1.3)
    # without end and never a byte of data: the HTTPS request's reader used to wait
    # while OpenSSL decrypted them at wire speed until the deadline (a core spent).
    timeout = 4.0
    with TLSServer(behaviour) as server:
        cpu = thread_cpu()
        obs = run(
            fetch(
                f"https://{NAME}:{server.port}/",
                address=server.address,
                context=context(),
                timeout=timeout,
                t0=time.monotonic(),
                allow_loopback=True,
            )
        )
        spent = thread_cpu() - cpu
    assert obs.failure is Failure.TLS_PROTOCOL_ERROR, obs
    assert obs.elapsed_ms < timeout * 1000 / 2 and spent < 0.5, (obs.elapsed_ms, spent)


def test_a_huge_chain_is_refused_quickly() -> None:
    with TLSServer(Behaviour.HUGE_CHAIN) as server:
        _, tls = probe(server, timeout=5.0)
    assert tls is not None and tls.failure is Failure.TLS_PROTOCOL_ERROR
    assert tls.elapsed_ms < 5000 / 2
