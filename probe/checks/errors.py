"""Map exceptions raised by sockets, ssl, asyncio, h11 and httpx onto :class:`Failure`.

Every protocol module uses this one function so that the same kernel event
(say, an RST) gets the same name whichever phase saw it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import sys

from probe.checks.decode import DecodingError
from probe.failures import Failure

log = logging.getLogger(__name__)

_ERRNO_FAILURES: dict[int, Failure] = {
    errno.ECONNREFUSED: Failure.CONNECTION_REFUSED,
    errno.ECONNRESET: Failure.CONNECTION_RESET,
    errno.ECONNABORTED: Failure.CONNECTION_RESET,
    errno.EPIPE: Failure.CONNECTION_RESET,
    errno.ETIMEDOUT: Failure.TIMEOUT,
    errno.EHOSTUNREACH: Failure.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Failure.HOST_UNREACHABLE,
    errno.ENETUNREACH: Failure.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Failure.NETWORK_UNREACHABLE,
    errno.EADDRNOTAVAIL: Failure.NETWORK_UNREACHABLE,
    errno.EAFNOSUPPORT: Failure.NETWORK_UNREACHABLE,
}


def certificate_failure(exc: ssl.SSLCertVerificationError) -> Failure:
    """Name a certificate verification failure from OpenSSL's verify code."""
    code = getattr(exc, "verify_code", None)
    # X509_V_ERR_* codes from OpenSSL's x509_vfy.h.
    if code in (2, 18, 19, 20, 21, 27):  # unable to get issuer / self-signed / untrusted
        return Failure.TLS_UNKNOWN_AUTHORITY
    if code == 10:  # certificate has expired
        return Failure.TLS_EXPIRED_CERTIFICATE
    if code == 62:  # hostname mismatch
        return Failure.TLS_INVALID_HOSTNAME
    message = str(exc).lower()
    if "hostname" in message or "ip address mismatch" in message:
        return Failure.TLS_INVALID_HOSTNAME
    return Failure.TLS_INVALID_CERTIFICATE


def failure_from_exception(exc: BaseException) -> Failure:
    """Return the closed-vocabulary name for ``exc`` (never raises).

    httpx wraps httpcore's exceptions, which wrap anyio's, which wrap the
    ``OSError``/``ssl`` error that says what happened (an RST, a certificate
    rejection), so the explicit cause chain is walked until a link maps.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 16:
        seen.add(id(link))
        failure = _direct_failure(link)
        if failure is not None:
            return failure
        link = link.__cause__ or link.__context__
    log.debug("unmapped exception %s: %s", type(exc).__name__, exc)
    return Failure.UNKNOWN_ERROR


def forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of the exceptions it chains, once it has
    become a Failure and will not be raised again.

    A traceback keeps every frame it passed through alive, and asyncio's frames
    hold the exception itself (``handshake_exc`` in its TLS protocol...): a
    reference cycle that keeps the connection's transports, and the 256 KiB read
    buffer of each TLS one, until the cyclic collector's rare full collection.
    Over a list where thousands of handshakes or connects fail, memory then grew
    with the list's length.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 16:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__


def _direct_failure(exc: BaseException) -> Failure | None:
    """The failure ``exc`` itself names, or None when only its cause can tell."""
    # An exception of a library that was never imported cannot be one of its own.
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPError):
        return _httpx_failure(exc)
    h11 = sys.modules.get("h11")
    if h11 is not None and isinstance(exc, h11.ProtocolError):
        return Failure.HTTP_PROTOCOL_ERROR  # probe.checks.http raises EOFError for a close
    if isinstance(exc, DecodingError):
        return Failure.HTTP_PROTOCOL_ERROR  # a body that is not what it claims
    if isinstance(exc, ssl.SSLCertVerificationError):
        return certificate_failure(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | socket.timeout):
        return Failure.TIMEOUT
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError | asyncio.IncompleteReadError):
        return Failure.EOF
    if isinstance(exc, ConnectionResetError):
        # asyncio's SSL protocol reports a FIN during the handshake by raising the bare
        # class (no errno, no message); a real RST always carries ECONNRESET.
        if exc.errno is None and not exc.args:
            return Failure.EOF
        return Failure.CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return Failure.CONNECTION_REFUSED
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None)  # set by OpenSSL's errors only
        reason = reason.upper() if isinstance(reason, str) else ""
        if "EOF" in reason or "UNEXPECTED_EOF" in str(exc).upper():
            return Failure.EOF
        return Failure.TLS_PROTOCOL_ERROR
    if isinstance(exc, OSError) and exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno]
    if isinstance(exc, EOFError):
        return Failure.EOF
    if type(exc).__name__ == "EndOfStream" and type(exc).__module__.startswith("anyio"):
        return Failure.EOF  # anyio: the peer closed (e.g. during httpx's TLS handshake)
    return None


def _httpx_failure(exc: BaseException) -> Failure | None:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return Failure.TIMEOUT
    if isinstance(exc, httpx.TooManyRedirects):
        return Failure.HTTP_TOO_MANY_REDIRECTS
    if isinstance(exc, httpx.RemoteProtocolError):
        # httpcore reports "Server disconnected without sending a response" this way.
        # A close mid-body reads "peer closed connection without sending complete message body".
        message = str(exc).lower()
        if "disconnected" in message or "peer closed" in message:
            return Failure.EOF
        return Failure.HTTP_PROTOCOL_ERROR
    if isinstance(exc, httpx.LocalProtocolError | httpx.DecodingError):
        return Failure.HTTP_PROTOCOL_ERROR  # DecodingError: a body that is not what it claims
    return None  # ConnectError, ReadError...: the cause says what happened
