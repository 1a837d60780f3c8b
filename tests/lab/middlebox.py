"""The censor's user-space half: what iptables alone cannot do.

Run inside the isp namespace (``python -m tests.lab.middlebox ...``); the
scenario REDIRECTs forwarded traffic to it. Three independent roles:

* ``--http PORT``: transparent HTTP proxy that reads the Host header and
  answers blocked hosts with the ISP blockpage, splicing every other request
  to its original destination (so the trigger really is the Host header);
* ``--tls PORT``: reads the SNI from the ClientHello without consuming it and
  either completes the handshake itself with a rogue-CA certificate
  (interception) or splices the connection to its original destination;
* ``--dns HOST:PORT --rcode NAME``: an upstream that answers every query with
  one rcode, so the ISP's real dnsmasq can forward the target to it.

Threads and blocking sockets keep it short; every socket has a timeout so a
stuck peer costs a thread for a bounded time only.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SO_ORIGINAL_DST = 80
_PEEK_LIMIT = 16384
_IDLE_TIMEOUT = 30.0
_RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}


def _peek_until(conn: socket.socket, complete: Callable[[bytes], bool], wait: float) -> bytes:
    """Peek (never consume) until ``complete(data)`` or the limit/deadline is reached."""
    deadline = time.monotonic() + wait
    data = b""
    while time.monotonic() < deadline and len(data) < _PEEK_LIMIT:
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = conn.recv(_PEEK_LIMIT, socket.MSG_PEEK)
        except (TimeoutError, OSError):
            break
        if not data or complete(data):
            break
        time.sleep(0.01)
    conn.settimeout(_IDLE_TIMEOUT)
    return data


def _hello_complete(data: bytes) -> bool:
    return len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big")


def parse_sni(data: bytes) -> str | None:
    """The server_name of a ClientHello record, or None when absent or malformed."""
    try:
        if data[0] != 0x16 or data[5] != 0x01:
            return None
        pos = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        pos += 1 + data[pos]  # session id
        pos += 2 + int.from_bytes(data[pos : pos + 2], "big")  # cipher suites
        pos += 1 + data[pos]  # compression methods
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack("!HH", data[pos : pos + 4])
            pos += 4
            if ext_type == 0:
                name_len = int.from_bytes(data[pos + 3 : pos + 5], "big")
                return data[pos + 5 : pos + 5 + name_len].decode("ascii").lower().rstrip(".")
            pos += ext_len
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def parse_host(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            host = value.strip().decode("ascii", "replace").lower()
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return None


def _original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, _SO_ORIGINAL_DST, 16)
    return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _splice(conn: socket.socket) -> None:
    """Connect to where the client meant to go and copy bytes both ways."""
    try:
        upstream = socket.create_connection(_original_dst(conn), timeout=5)
    except OSError:
        return
    upstream.settimeout(_IDLE_TIMEOUT)
    with upstream:
        back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
        back.start()
        _pipe(conn, upstream)
        back.join(_IDLE_TIMEOUT)


def _serve(port: int, handle: Callable[[socket.socket], None]) -> None:
    listener = socket.create_server(("0.0.0.0", port), backlog=128, reuse_port=False)

    def run_one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ssl.SSLError):
            handle(conn)

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=run_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def http_handler(blocked: frozenset[str], blockpage: bytes) -> Callable[[socket.socket], None]:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: " + str(len(blockpage)).encode() + b"\r\nConnection: close\r\n\r\n"
    ) + blockpage

    def handle(conn: socket.socket) -> None:
        data = _peek_until(conn, lambda d: b"\r\n\r\n" in d, wait=5)
        if parse_host(data) in blocked:
            conn.recv(len(data))  # consume the request so close() sends FIN, not RST
            conn.sendall(response)
            conn.shutdown(socket.SHUT_WR)
            return
        _splice(conn)

    return handle


def tls_handler(
    intercepted: frozenset[str], context: ssl.SSLContext
) -> Callable[[socket.socket], None]:
    page = b"<html><head><title>intercepted</title></head><body>intercepted</body></html>"
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
        + str(len(page)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + page
    )

    def handle(conn: socket.socket) -> None:
        hello = _peek_until(conn, _hello_complete, wait=5)
        if parse_sni(hello) not in intercepted:
            _splice(conn)
            return
        with context.wrap_socket(conn, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request and len(request) < _PEEK_LIMIT:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                request += chunk
            tls.sendall(response)

    return handle


def _dns_rcode_server(listen: str, rcode: int) -> None:
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))

    def loop() -> None:
        while True:
            query, peer = sock.recvfrom(4096)
            if len(query) < 12:
                continue
            flags = int.from_bytes(query[2:4], "big")
            flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode  # QR, opcode+RD kept, RA
            # header with the question kept (qdcount as sent) and no other sections
            header = query[:2] + flags.to_bytes(2, "big") + query[4:6] + b"\0" * 6
            sock.sendto(header + _question(query), peer)

    threading.Thread(target=loop, daemon=True).start()


def _question(query: bytes) -> bytes:
    pos = 12
    while pos < len(query) and query[pos] != 0:
        pos += 1 + query[pos]
    return query[12 : pos + 5]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.middlebox")
    parser.add_argument("--http", type=int, help="transparent HTTP proxy port")
    parser.add_argument("--block-host", action="append", default=[])
    parser.add_argument("--blockpage", type=Path)
    parser.add_argument("--tls", type=int, help="transparent TLS port")
    parser.add_argument("--intercept-sni", action="append", default=[])
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--dns", help="HOST:PORT of the rcode responder")
    parser.add_argument("--rcode", choices=sorted(_RCODES), default="SERVFAIL")
    args = parser.parse_args(argv)
    if args.http is not None:
        body = args.blockpage.read_bytes() if args.blockpage else b"blocked"
        _serve(args.http, http_handler(frozenset(args.block_host), body))
    if args.tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        _serve(args.tls, tls_handler(frozenset(args.intercept_sni), context))
    if args.dns is not None:
        _dns_rcode_server(args.dns, _RCODES[args.rcode])
    threading.Event().wait()


if __name__ == "__main__":
    main()
