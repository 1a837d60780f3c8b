"""A loopback TLS server whose misbehaviour is chosen by the test.

Censors and middleboxes act on the ClientHello: they reset the connection,
close it, stall it, answer with junk or present another certificate, often
only for some SNI values.  :class:`TLSServer` reproduces each of these on
127.0.0.1 with real sockets so the TLS (and HTTPS) checks can be tested
without any other host.  Certificates come from a trustme CA; clients trust
it through :attr:`CertAuthority.bundle` (a PEM file of the root).

Typical use::

    with TLSServer(Behaviour.RESET, sni_behaviours={"good.test": Behaviour.NORMAL}) as srv:
        ...dial srv.address, srv.port, trust default_authority().bundle...

Each accepted connection is served by its own thread; :meth:`TLSServer.close`
(or leaving the ``with`` block) stops them all.
"""

from __future__ import annotations

import atexit
import datetime as dt
import enum
import functools
import hashlib
import hmac
import selectors
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trustme

DEFAULT_NAMES = ("example.test",)
WRONG_NAME = "wrong-name.test"
GARBAGE = b"this is not TLS at all\r\n" * 8
POLL_S = 0.05  # how often blocked server threads look at the stop flag
TRICKLE_S = 0.1
HUGE_CHAIN_EXTRA = 400  # ~300 KB of certificates: past OpenSSL's 100 KiB and our 256 KiB
# TLS 1.2 handshake records: 4096 HelloRequest messages (type 0, length 0) each.
HELLO_REQUESTS = b"\x16\x03\x03\x40\x00" + b"\x00\x00\x00\x00" * 4096
# A ServerHello whose handshake header claims 2^24 - 1 bytes, then its body forever.
ENDLESS_HELLO_HEAD = b"\x16\x03\x03\x40\x00\x02\xff\xff\xff\x03\x03" + bytes(16374)
ENDLESS_HELLO_MORE = b"\x16\x03\x03\x40\x00" + bytes(16384)


class Behaviour(enum.StrEnum):
    """What the server does with a connection."""

    NORMAL = "normal"  # valid certificate for the names, then run the app
    UNTRUSTED = "untrusted"  # certificate from a CA the client does not trust
    WRONG_NAME = "wrong_name"  # trusted certificate for WRONG_NAME only
    EXPIRED = "expired"  # trusted certificate for the names, expired yesterday
    RESET = "reset"  # read the ClientHello, then RST (SO_LINGER 0)
    CLOSE = "close"  # read the ClientHello, then FIN
    HANG = "hang"  # accept, never read nor write
    GARBAGE = "garbage"  # read the ClientHello, answer GARBAGE, keep the connection open
    HELLO_REQUESTS = "hello_requests"  # answer HelloRequest messages as fast as they go
    ENDLESS_HELLO = "endless_hello"  # a ServerHello announced as 16 MB, sent as fast as it goes
    TRICKLE = "trickle"  # a ServerHello record, one byte per TRICKLE_S, never complete
    HUGE_CHAIN = "huge_chain"  # the valid leaf, then HUGE_CHAIN_EXTRA more certificates
    # After a complete, valid handshake (so past the handshake limit):
    HELLO_REQUESTS_AFTER = "hello_requests_after"  # TLS 1.2, then HelloRequests as fast as they go
    TICKETS = "tickets"  # TLS 1.3, then session tickets as fast as they go


App = Callable[[ssl.SSLSocket, threading.Event], None]
"""Runs after a successful handshake; must return soon after the event is set."""


@dataclass(frozen=True)
class CertAuthority:
    """A root CA (trusted via :attr:`bundle`) and the intermediate that signs leaves.

    Leaves are issued by an intermediate so servers present a two-certificate
    chain, which lets tests check that the whole presented chain is recorded.
    """

    root: trustme.CA
    issuer: trustme.CA
    bundle: str  # PEM file holding the root certificate

    @classmethod
    def create(cls, directory: Path) -> CertAuthority:
        root = trustme.CA()
        bundle = directory / f"ca-{id(root):x}.pem"
        root.cert_pem.write_to_path(str(bundle))
        return cls(root=root, issuer=root.create_child_ca(), bundle=str(bundle))

    def issue(
        self,
        *names: str,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> trustme.LeafCert:
        return self.issuer.issue_cert(*names, not_before=not_before, not_after=not_after)


@functools.cache
def default_authority() -> CertAuthority:
    """The process-wide test CA (creating CAs is cheap, but one is enough)."""
    directory = Path(tempfile.mkdtemp(prefix="reachprobe-ca-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return CertAuthority.create(directory)


@functools.cache
def untrusted_authority() -> CertAuthority:
    """A second CA that clients of :func:`default_authority` do not trust."""
    directory = Path(tempfile.mkdtemp(prefix="reachprobe-ca-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return CertAuthority.create(directory)


def server_context(cert: trustme.LeafCert, alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def huge_chain_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    """A server context presenting ``leaf``'s chain followed by many more certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    extra = untrusted_authority().root.cert_pem.bytes() * HUGE_CHAIN_EXTRA
    chain = b"".join(p.bytes() for p in leaf.cert_chain_pems) + extra
    with tempfile.NamedTemporaryFile(suffix=".pem") as pem, leaf.private_key_pem.tempfile() as key:
        pem.write(chain)
        pem.flush()
        context.load_cert_chain(pem.name, key)
    return context


def leaf_der(cert: trustme.LeafCert) -> bytes:
    """DER of the leaf certificate, as a client sees it on the wire."""
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def parse_sni(hello: bytes) -> str | None:
    """The server_name of a TLS ClientHello record, or None when it has none.

    Raises ValueError when ``hello`` is not a complete ClientHello record.
    """
    try:
        if hello[0] != 0x16 or hello[5] != 0x01:  # handshake record, ClientHello
            raise ValueError("not a ClientHello")
        pos = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        pos += 1 + hello[pos]  # session id
        pos += 2 + struct.unpack_from("!H", hello, pos)[0]  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = pos + 2 + struct.unpack_from("!H", hello, pos)[0]
        pos += 2
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", hello, pos)
            pos += 4
            if ext_type == 0:  # server_name: list length, type (0 = host_name), length, name
                name_len = struct.unpack_from("!H", hello, pos + 3)[0]
                return hello[pos + 5 : pos + 5 + name_len].decode("ascii")
            pos += ext_len
    except (IndexError, struct.error) as exc:
        raise ValueError("truncated ClientHello") from exc
    return None


def drain(sock: ssl.SSLSocket, stop: threading.Event) -> None:
    """Default app: read and discard until the client closes (or the server stops)."""
    sock.settimeout(POLL_S)
    while not stop.is_set():
        try:
            if not sock.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def echo(sock: ssl.SSLSocket, stop: threading.Event) -> None:
    """App: send back whatever the client sends, until it closes."""
    sock.settimeout(POLL_S)
    while not stop.is_set():
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return
        if not data:
            return
        sock.sendall(data)


def hold(sock: ssl.SSLSocket, stop: threading.Event) -> None:
    """App: keep the connection open without reading (ignores close_notify)."""
    stop.wait()


class TLSServer:
    """A TLS server on ``host`` (default 127.0.0.1), an ephemeral port.

    ``behaviour`` applies to every connection unless the ClientHello's SNI is
    a key of ``sni_behaviours``.  ``server_names`` lists the SNI of each
    ClientHello read, in order (None: no SNI), so tests can assert what was
    sent.  ``app`` serves connections whose handshake succeeded.
    """

    def __init__(
        self,
        behaviour: Behaviour = Behaviour.NORMAL,
        *,
        names: tuple[str, ...] = DEFAULT_NAMES,
        sni_behaviours: Mapping[str, Behaviour] | None = None,
        alpn: tuple[str, ...] = ("http/1.1",),
        app: App = drain,
        authority: CertAuthority | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``port`` 0 picks a free one (a fixed 443 needs root)."""
        self.behaviour = behaviour
        self.sni_behaviours = dict(sni_behaviours or {})
        self.app = app
        self.authority = authority or default_authority()
        self.server_names: list[str | None] = []
        self.accepted = 0
        self.certs = self._build_certs(names)  # the leaf each certificate behaviour presents
        self._contexts = {b: server_context(cert, alpn) for b, cert in self.certs.items()}
        if Behaviour.HUGE_CHAIN in (behaviour, *self.sni_behaviours.values()):
            self._contexts[Behaviour.HUGE_CHAIN] = huge_chain_context(self.certs[Behaviour.NORMAL])
        tickets = server_context(self.certs[Behaviour.NORMAL], alpn)
        tickets.num_tickets = 2**31  # sent right after the handshake, all of them
        self._contexts[Behaviour.TICKETS] = tickets
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(64)
        self.address = host
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def ca_bundle(self) -> str:
        """PEM file of the CA that clients should trust."""
        return self.authority.bundle

    def __enter__(self) -> TLSServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, end every connection and join all threads."""
        self._stop.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            threads, sockets = list(self._threads), list(self._sockets)
        for thread in threads:
            thread.join(timeout=5)
        for sock in sockets:
            sock.close()

    # ------------------------------------------------------------------ internals

    def _build_certs(self, names: tuple[str, ...]) -> dict[Behaviour, trustme.LeafCert]:
        now = dt.datetime.now(dt.UTC)
        authority = self.authority
        return {
            Behaviour.NORMAL: authority.issue(*names),
            Behaviour.UNTRUSTED: untrusted_authority().issue(*names),
            Behaviour.WRONG_NAME: authority.issue(WRONG_NAME),
            Behaviour.EXPIRED: authority.issue(
                *names,
                not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=1),
            ),
        }

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not selector.select(POLL_S):
                    continue
                try:
                    sock, _ = self._listener.accept()
                except OSError:
                    continue
                thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
                with self._lock:
                    self.accepted += 1
                    self._sockets.append(sock)
                    self._threads.append(thread)
                thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self._serve_unsafe(sock)
        except OSError:  # the client went away, or a handshake failed: both expected
            pass
        finally:
            sock.close()

    def _serve_unsafe(self, sock: socket.socket) -> None:
        behaviour = self.behaviour
        if behaviour is Behaviour.HANG and not self.sni_behaviours:
            self._stop.wait()
            return
        hello = self._read_client_hello(sock)
        if hello is None:
            return
        sni = parse_sni(hello)
        with self._lock:
            self.server_names.append(sni)
        behaviour = self.sni_behaviours.get(sni or "", behaviour)
        if behaviour is Behaviour.HANG:
            self._stop.wait()
        elif behaviour is Behaviour.RESET:
            sock.recv(len(hello))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif behaviour is Behaviour.CLOSE:
            sock.recv(len(hello))  # consume it: unread data would turn the close into an RST
            sock.shutdown(socket.SHUT_RDWR)
        elif behaviour is Behaviour.GARBAGE:
            sock.recv(len(hello))
            sock.sendall(GARBAGE)
            self._wait_for_close(sock)
        elif behaviour in (Behaviour.HELLO_REQUESTS, Behaviour.ENDLESS_HELLO):
            sock.recv(len(hello))
            self._flood(sock, behaviour)
        elif behaviour is Behaviour.HELLO_REQUESTS_AFTER:
            self._hello_requests_after(sock)
        elif behaviour is Behaviour.TRICKLE:
            sock.recv(len(hello))
            for byte in ENDLESS_HELLO_HEAD:
                sock.sendall(bytes([byte]))
                if self._stop.wait(TRICKLE_S):
                    return
        else:
            sock.settimeout(2)  # bounds close() if a client stalls mid-handshake
            with self._contexts[behaviour].wrap_socket(sock, server_side=True) as tls:
                self.app(tls, self._stop)

    def _read_client_hello(self, sock: socket.socket) -> bytes | None:
        """Peek (not consume) one whole TLS record; None if the client closed or we stop."""
        sock.settimeout(POLL_S)
        want = 5
        while not self._stop.is_set():
            try:
                data = sock.recv(want, socket.MSG_PEEK)
            except TimeoutError:
                continue
            if not data:
                return None
            if len(data) >= 5:
                want = 5 + struct.unpack_from("!H", data, 3)[0]
                if len(data) >= want:
                    return data
            self._stop.wait(0.005)  # MSG_PEEK returns at once while data is pending
        return None

    def _flood(self, sock: socket.socket, behaviour: Behaviour) -> None:
        """Send the behaviour's records as fast as the client takes them, until it goes."""
        sock.settimeout(POLL_S)
        first = HELLO_REQUESTS if behaviour is Behaviour.HELLO_REQUESTS else ENDLESS_HELLO_HEAD
        more = HELLO_REQUESTS if behaviour is Behaviour.HELLO_REQUESTS else ENDLESS_HELLO_MORE
        data = first
        while not self._stop.is_set():
            try:
                sock.sendall(data)
            except TimeoutError:
                continue
            data = more

    def _hello_requests_after(self, sock: socket.socket) -> None:
        """A TLS 1.2 handshake (pyOpenSSL), then HelloRequests until the client goes.

        OpenSSL sends one HelloRequest and waits for an answer, so the records
        are made here: AES-128-GCM under the session's own keys (RFC 5246
        key expansion from the master secret), sequence numbers following the
        server's Finished.  The client decrypts them all and must ignore them.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from OpenSSL import SSL

        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_max_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
        context.set_options(SSL.OP_NO_TICKET)  # nothing encrypted before our first record
        with self.certs[Behaviour.NORMAL].private_key_and_cert_chain_pem.tempfile() as pem:
            context.use_certificate_chain_file(pem)
            context.use_privatekey_file(pem)
        sock.settimeout(None)  # blocking: until the client reads or goes (records stay whole)
        conn = SSL.Connection(context, sock)
        conn.set_accept_state()
        try:
            conn.do_handshake()
        except SSL.Error:
            return
        master, server, client = conn.master_key(), conn.server_random(), conn.client_random()
        assert master is not None and server is not None and client is not None
        block = _prf(master, b"key expansion", server + client)
        aead, salt = AESGCM(block[16:32]), block[36:40]  # server write key and IV
        sequence = 1  # the server's Finished was 0
        while not self._stop.is_set():
            records = bytearray()
            for _ in range(256):
                explicit = struct.pack("!Q", sequence)
                header = b"\x16\x03\x03"  # handshake, TLS 1.2
                sealed = aead.encrypt(salt + explicit, bytes(4), explicit + header + b"\x00\x04")
                records += header + struct.pack("!H", 8 + len(sealed)) + explicit + sealed
                sequence += 1
            sock.sendall(records)

    def _wait_for_close(self, sock: socket.socket) -> None:
        sock.settimeout(POLL_S)
        while not self._stop.is_set():
            try:
                if not sock.recv(65536):
                    return
            except TimeoutError:
                continue


def _prf(secret: bytes, label: bytes, seed: bytes, size: int = 40) -> bytes:
    """TLS 1.2's PRF with SHA-256 (RFC 5246 section 5), ``size`` bytes."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < size:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:size]
