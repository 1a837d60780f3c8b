"""TLS handshake over an open connection, recording what the server presented.

SNI filtering acts on the ClientHello, so the handshake is where it shows:
a reset, a close or a stall right after the ClientHello, or a forged
certificate (TLS interception).  The chain presented is recorded even when
verification fails, because an intercepting certificate is evidence.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import ssl
import time
from typing import TYPE_CHECKING, Any

from probe.checks import certwire
from probe.checks.errors import failure_from_exception, forget_traceback
from probe.checks.tcp import Connection, connect, elapsed_ms, open_connection
from probe.checks.timer import within
from probe.errors import UsageError
from probe.observations import Certificate, TCPObservation, TLSObservation, rfc3339

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

DEFAULT_ALPN = ("h2", "http/1.1")
HANDSHAKE_LIMIT = 256 * 1024
"""Bytes a server may send during the handshake.  A real server flight is a few
KiB (OpenSSL refuses chains over 100 KiB); a server streaming HelloRequests,
which the client must ignore mid-handshake, would keep a core busy until the
deadline."""
POST_HANDSHAKE_LIMIT = 1024 * 1024
"""Bytes a server may send after the handshake beyond the application data they
carry.  Real ones are record overhead and a few session tickets, plus what
asyncio holds before decrypting (at most 256 KiB and one read); a server
streaming HelloRequests or session tickets sends nothing to read, and the
client would decrypt them at wire speed until the deadline."""
_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)  # private chain API (< 3.13)


def make_context(
    ca_bundle: str | None = None, *, verify: bool = True, alpn: tuple[str, ...] = DEFAULT_ALPN
) -> ssl.SSLContext:
    """A client context trusting the system store plus ``ca_bundle`` (PEM).

    Cached: a check makes dozens of handshakes, and loading the system store
    costs tens of milliseconds (several times that on a Raspberry Pi), so
    each distinct context is built once per process, when first asked for.
    ``verify=False`` disables certificate and hostname checks (used to capture
    a chain that failed verification, and for the control SNI); such a context
    loads no trust store at all, as it would never consult one: its ClientHello
    is the same.  Raises UsageError when the bundle cannot be read or holds no
    certificate.
    """
    if not verify:
        return _unverified_context(tuple(alpn))
    return _verified_context(ca_bundle, tuple(alpn))


@functools.lru_cache(maxsize=16)
def _verified_context(ca_bundle: str | None, alpn: tuple[str, ...]) -> ssl.SSLContext:
    store = hashed_system_store()
    context = ssl.create_default_context(capath=store)  # None: the default paths
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "reason", None)  # ssl.SSLError: NO_CERTIFICATE_OR_CRL_FOUND...
            detail = (
                reason.replace("_", " ").lower()
                if reason
                else getattr(exc, "strerror", None) or exc
            )
            raise UsageError(f"cannot read CA bundle {ca_bundle}: {detail}") from exc
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def hashed_system_store() -> str | None:
    """The system's CA directory when it holds exactly the system bundle, else None.

    Loading the bundle parses every CA certificate in it (about 150: tens of
    milliseconds here, several times that on a Raspberry Pi, for every context).
    Debian's and Raspberry Pi OS's ``update-ca-certificates`` write the same
    certificates twice: the bundle, and beside it a directory of links named by
    subject hash, from which OpenSSL reads only the issuers a handshake needs.
    When the bundle lies in such a directory (honouring ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``), the directory alone is the same trust at a fraction of
    the cost; elsewhere the default paths are loaded as they are.
    """
    paths = ssl.get_default_verify_paths()
    if not paths.cafile or not paths.capath:
        return None
    directory = os.path.realpath(paths.capath)
    if os.path.dirname(os.path.realpath(paths.cafile)) != directory:
        return None
    try:
        with os.scandir(directory) as entries:
            hashed = any(_is_hash_link(entry.name) for entry in entries)
    except OSError:
        return None
    return directory if hashed else None


def _is_hash_link(name: str) -> bool:
    """``0123abcd.0``: a name ``c_rehash``/``openssl rehash`` gives a CA certificate."""
    stem, dot, suffix = name.partition(".")
    return (
        bool(dot)
        and len(stem) == 8
        and suffix.isdigit()
        and all(c in "0123456789abcdef" for c in stem)
    )


@functools.lru_cache(maxsize=16)
def _unverified_context(alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # create_default_context's defaults
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


class _Meter(asyncio.BufferedProtocol):
    """Stands between a socket transport and the TLS protocol reading it, counting
    the bytes the peer sends; aborts the connection once more than ``limit`` of
    them (None: no limit) carried no application data (see :class:`_Delivered`)."""

    def __init__(
        self, inner: asyncio.BufferedProtocol, limit: int | None, transport: asyncio.WriteTransport
    ) -> None:
        self.inner = inner
        self.limit = limit
        self.transport = transport  # asyncio tells the TLS protocol, not us, of it
        self.received = 0
        self.delivered = 0  # application bytes the TLS protocol passed on
        self.phase = "during the handshake"
        self.exceeded = False

    def after_handshake(self, tls_transport: asyncio.BaseTransport) -> None:
        """From now on, count against :data:`POST_HANDSHAKE_LIMIT` what is not data."""
        self.received = self.delivered = 0
        self.limit = POST_HANDSHAKE_LIMIT
        self.phase = "without application data after the handshake"
        app = tls_transport.get_protocol()
        if isinstance(app, asyncio.Protocol) and not isinstance(app, asyncio.BufferedProtocol):
            tls_transport.set_protocol(_Delivered(app, self))
        else:  # nothing counts what it delivers: no limit rather than a wrong one
            self.limit = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def get_buffer(self, sizehint: int) -> Any:
        return self.inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        if self.limit is not None and self.received - self.delivered > self.limit:
            self.exceeded = True
            self.transport.abort()
            return
        self.inner.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self.exceeded:  # a failure, not a clean close
            exc = ssl.SSLError(f"more than {self.limit} bytes {self.phase}")
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Delivered(asyncio.Protocol):
    """Stands between the TLS transport and the stream reading it, counting the
    application bytes delivered for its :class:`_Meter`."""

    def __init__(self, inner: asyncio.Protocol, meter: _Meter) -> None:
        self.inner = inner
        self.meter = meter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.meter.delivered += len(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def start_tls(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, server_name: str, timeout: float
) -> None:
    """``writer.start_tls`` within ``timeout``, refusing a server that sends more than
    :data:`HANDSHAKE_LIMIT` bytes before the handshake ends (raises ssl.SSLError),
    and then more than :data:`POST_HANDSHAKE_LIMIT` bytes that are not
    application data (reads then fail with ssl.SSLError).

    The TLS protocol the loop installs is wrapped in a :class:`_Meter` one loop
    turn later, before the loop's first read for it (which the loop schedules
    after that turn, asyncio's and uvloop's alike: uvloop's transports cannot be
    patched), and once the handshake is done the stream's protocol in a
    :class:`_Delivered` that tells the meter what was data.
    """
    transport = writer.transport
    meter: _Meter | None = None
    with within(timeout):
        upgrade = asyncio.create_task(
            writer.start_tls(
                context, server_hostname=server_name, ssl_handshake_timeout=_backstop(timeout)
            )
        )
        try:
            # One turn of the loop: the upgrade installs its TLS protocol on the
            # transport and schedules the first read after this task's next step.
            await asyncio.sleep(0)
        except BaseException:
            upgrade.cancel()
            raise
        protocol = transport.get_protocol()
        if not upgrade.done() and hasattr(protocol, "get_buffer"):
            meter = _Meter(protocol, HANDSHAKE_LIMIT, transport)  # type: ignore[arg-type]
            transport.set_protocol(meter)
        await upgrade
    if meter is not None:
        meter.after_handshake(writer.transport)


async def handshake(
    conn: Connection, *, server_name: str, context: ssl.SSLContext, timeout: float, t0: float
) -> TLSObservation:
    """Upgrade ``conn`` to TLS with SNI ``server_name``; never raises for network errors.

    On success ``conn`` carries TLS from now on.  On a certificate failure
    the chain is captured by a second, unverified handshake on a new
    connection to the same endpoint, within what is left of ``timeout``;
    ``elapsed_ms`` covers the first handshake only.
    """
    start = time.monotonic()
    deadline = start + timeout
    t_ms = (start - t0) * 1000

    try:
        await start_tls(conn.writer, context, server_name, timeout)
    except Exception as exc:
        failure = failure_from_exception(exc)
        forget_traceback(exc)
        took = elapsed_ms(start)
        chain: tuple[Certificate, ...] = ()
        if failure.is_tls_certificate:
            chain = await _capture_chain(conn, server_name, deadline - time.monotonic())
        return TLSObservation(
            conn.address, conn.port, server_name, t_ms, took, failure, chain=chain
        )
    sslobj = conn.writer.get_extra_info("ssl_object")
    cipher = sslobj.cipher() if sslobj is not None else None
    return TLSObservation(
        conn.address,
        conn.port,
        server_name,
        t_ms,
        elapsed_ms(start),
        None,
        version=sslobj.version() if sslobj is not None else None,
        cipher=cipher[0] if cipher else None,
        alpn=sslobj.selected_alpn_protocol() if sslobj is not None else None,
        chain=presented_chain(sslobj),
    )


async def probe_tls(
    address: str,
    port: int,
    server_name: str,
    *,
    context: ssl.SSLContext,
    timeout: float,
    t0: float,
    allow_loopback: bool = False,
) -> tuple[TCPObservation, TLSObservation | None]:
    """Connect, handshake, close: a stand-alone handshake (the control-SNI one).

    The TLS observation is None when the TCP connect failed.
    """
    deadline = time.monotonic() + timeout
    tcp, conn = await connect(address, port, timeout=timeout, t0=t0, allow_loopback=allow_loopback)
    if conn is None:
        return tcp, None
    try:
        tls = await handshake(
            conn,
            server_name=server_name,
            context=context,
            timeout=deadline - time.monotonic(),
            t0=t0,
        )
    finally:
        await conn.close()
    return tcp, tls


def _backstop(timeout: float) -> float:
    """asyncio's own handshake timeout, set later than ours so that ours always fires
    first (asyncio's raises a ConnectionAbortedError that would not read as a timeout)."""
    return max(timeout, 0.0) + 1.0


async def _capture_chain(
    conn: Connection, server_name: str, timeout: float
) -> tuple[Certificate, ...]:
    """Re-dial the endpoint and handshake without verification, only to see the chain."""
    if timeout <= 0:
        return ()
    start = time.monotonic()
    try:
        again = await open_connection(conn.address, conn.port, timeout)
    except Exception as exc:
        log.debug("chain capture: connect to %s failed: %r", conn.address, exc)
        return ()
    try:
        remaining = timeout - (time.monotonic() - start)
        await start_tls(again.writer, make_context(verify=False), server_name, remaining)
        return presented_chain(again.writer.get_extra_info("ssl_object"))
    except Exception as exc:
        log.debug("chain capture: handshake with %s failed: %r", conn.address, exc)
        return ()
    finally:
        await again.close()


def presented_chain(sslobj: ssl.SSLObject | None) -> tuple[Certificate, ...]:
    """The certificates the server sent, leaf first (only the leaf if that is all we can get)."""
    if sslobj is None:
        return ()
    ders: list[bytes] = []
    public = getattr(sslobj, "get_unverified_chain", None)  # Python >= 3.13
    private = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    try:
        if public is not None:
            ders = [bytes(c) for c in public() or ()]
        elif private is not None:
            ders = [c.public_bytes(_DER) for c in private() or ()]
    except Exception as exc:  # a private API: fall back to the leaf
        log.debug("unverified chain unavailable: %r", exc)
        ders = []
    if not ders:
        leaf = sslobj.getpeercert(binary_form=True)
        ders = [leaf] if leaf else []
    return tuple(certificate(der) for der in ders)


@functools.lru_cache(maxsize=512)
def certificate(der: bytes) -> Certificate:
    """Describe a DER certificate; fields that do not parse are left empty.

    Intercepting middleboxes sometimes present malformed certificates, and
    the fingerprint alone is still worth keeping.  A certificate of the common
    shape is read by :mod:`probe.checks.certwire`, anything else by
    ``cryptography`` (imported only then), with the same result.  Cached by
    the certificate's bytes: a list sees the same intermediates, CDN leaves
    and control-SNI certificate over and over (the Certificate is frozen, so
    sharing it is safe).
    """
    sha256 = hashlib.sha256(der).hexdigest()
    fields = certwire.read(der)
    if fields is None:
        return _read_by_cryptography(der, sha256)
    subject, issuer, sans, not_before, not_after = fields
    return Certificate(subject, issuer, sans, sha256, rfc3339(not_before), rfc3339(not_after))


def _read_by_cryptography(der: bytes, sha256: str) -> Certificate:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):  # not ValueErrors, yet as malformed
        return Certificate("", "", (), sha256, "", "")
    return Certificate(
        subject=_safe(lambda: cert.subject.rfc4514_string()),
        issuer=_safe(lambda: cert.issuer.rfc4514_string()),
        sans=_sans(cert),
        sha256=sha256,
        not_before=_safe(lambda: rfc3339(cert.not_valid_before_utc)),
        not_after=_safe(lambda: rfc3339(cert.not_valid_after_utc)),
    )


def _safe(read: Any) -> str:
    try:
        return str(read())
    except Exception:
        return ""


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (
        x509.ExtensionNotFound,
        ValueError,
        x509.DuplicateExtension,  # a middlebox's certificate can be anything
        x509.UnsupportedGeneralNameType,  # an x400Address or ediPartyName
    ):
        return ()
    return tuple(
        str(name.value) for name in ext.value if isinstance(name, x509.DNSName | x509.IPAddress)
    )
