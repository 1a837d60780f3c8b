"""The lab itself works, independently of the probe.

Each scenario's mechanism is exercised from the vantage namespace with plain
sockets (and curl for the clean path): if these pass, a failing scenario test
is the probe's fault, not the lab's.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.lab import injector
from tests.lab.conftest import require
from tests.lab.netns import call_in
from tests.lab.scenarios import SCENARIOS, applied
from tests.lab.servers import BIG_BODY_BYTES, BLOCKPAGE_MARKER, BLOCKPAGE_TEXT
from tests.lab.topology import LAB_NAMES, Lab

TIMEOUT = 2.0
_IP_RECVERR = 11  # linux/in.h; not exported by the socket module


def outcome(exc: BaseException) -> str:
    """Name a failure the way the scenario tables do."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "cert"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "eof"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, TimeoutError | dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "unreachable"
    return repr(exc)


def attempt(lab: Lab, fn: Callable[[], object]) -> str:
    try:
        call_in(lab.vantage, fn)
    except Exception as exc:
        return outcome(exc)
    return "ok"


def resolve(lab: Lab, server: str, name: str) -> tuple[str, list[str]]:
    """(rcode or 'timeout', sorted A addresses) from ``server``, asked from the vantage."""

    def ask() -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, "A"), server, timeout=TIMEOUT)

    try:
        reply = call_in(lab.vantage, ask)
    except Exception as exc:
        return outcome(exc), []
    addresses = [
        r.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for r in rrset
    ]
    return dns.rcode.to_text(reply.rcode()), sorted(addresses)


def every_reply(lab: Lab, server: str, name: str, listen: float = 0.2) -> list[list[str]]:
    """The sorted A addresses of every reply to ONE query, in arrival order, listening
    ``listen`` seconds after the first (as the probe does, to catch injected replies)."""
    query = dns.message.make_query(name, "A", use_edns=0)

    def ask() -> list[list[str]]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((server, 53))  # only replies from the resolver's address:port
            sock.settimeout(TIMEOUT)
            sock.send(query.to_wire())
            found: list[list[str]] = []
            deadline = None
            while deadline is None or time.monotonic() < deadline:
                if deadline is not None:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    reply = dns.message.from_wire(sock.recv(4096))
                except TimeoutError:
                    break
                if query.is_response(reply):
                    found.append(sorted(r.address for rr in reply.answer for r in rr))
                    deadline = deadline or time.monotonic() + listen
            return found

    return call_in(lab.vantage, ask)


def tls_context(cafile: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["http/1.1"])
    return context


def fetch(
    lab: Lab,
    address: str,
    host: str,
    *,
    sni: str | None = None,
    cafile: Path | None = None,
    port: int | None = None,
    budget: float = TIMEOUT,
) -> tuple[int, bytes, float]:
    """GET / from ``address`` with Host ``host`` (over TLS with ``sni`` if given).

    Returns (status, body read within ``budget`` seconds, elapsed); raises the
    socket/ssl error untouched so callers can name it.
    """

    def run() -> tuple[int, bytes, float]:
        start = time.monotonic()
        raw = socket.create_connection((address, port or (443 if sni else 80)), timeout=TIMEOUT)
        sock: socket.socket = raw
        if sni is not None:
            sock = tls_context(cafile or lab.ca_pem).wrap_socket(raw, server_hostname=sni)
        with sock:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            deadline = start + budget
            while time.monotonic() < deadline:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return status, body, time.monotonic() - start

    return call_in(lab.vantage, run)


def handshake(lab: Lab, address: str, sni: str, cafile: Path | None = None) -> str:
    def run() -> None:
        raw = socket.create_connection((address, 443), timeout=TIMEOUT)
        with tls_context(cafile or lab.ca_pem).wrap_socket(raw, server_hostname=sni):
            pass

    return attempt(lab, run)


def split_hello(lab: Lab, address: str, sni: str) -> str:
    """Send a ClientHello for ``sni`` in two TCP segments cut inside the name; "ok" when
    the server's answer comes back."""

    def run() -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = tls_context(lab.ca_pem).wrap_bio(incoming, outgoing, server_hostname=sni)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        cut = hello.index(sni.encode()) + len(sni) // 2
        with socket.create_connection((address, 443), timeout=TIMEOUT) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.sendall(hello[:cut])
            time.sleep(0.01)
            raw.sendall(hello[cut:])
            if not raw.recv(5):
                raise ssl.SSLEOFError

    return attempt(lab, run)


def connect(lab: Lab, address: str, port: int) -> str:
    return attempt(lab, lambda: socket.create_connection((address, port), timeout=TIMEOUT).close())


def first(lab: Lab, name: str) -> str:
    return lab.addresses(name)[0]


# ----- the clean lab ------------------------------------------------------------------
def test_both_resolvers_answer_every_lab_name(clean_lab: Lab) -> None:
    for name in LAB_NAMES:
        expected = ("NOERROR", sorted(clean_lab.addresses(name)))
        assert resolve(clean_lab, clean_lab.net.isp_resolver, name) == expected, name
        assert resolve(clean_lab, clean_lab.net.internet_resolver, name) == expected, name


def test_https_with_curl_and_the_lab_ca(clean_lab: Lab) -> None:
    require(None if shutil.which("curl") else "curl is not installed")
    address = first(clean_lab, "x.com")
    out = subprocess.run(
        ["ip", "netns", "exec", clean_lab.vantage, "curl", "-sS", "--max-time", "5",
         "--cacert", str(clean_lab.ca_pem), "--resolve", f"x.com:443:{address}",
         "-w", "\n%{http_code}", "https://x.com/"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    body, _, code = out.stdout.rpartition("\n")
    assert code == "200"
    assert "<title>X. It's what's happening / X</title>" in body
    assert len(body) >= BIG_BODY_BYTES


def test_x_names_redirect_to_https_and_controls_serve_http(clean_lab: Lab) -> None:
    status, body, _ = fetch(clean_lab, first(clean_lab, "twitter.com"), "twitter.com")
    assert status == 301
    status, body, _ = fetch(clean_lab, first(clean_lab, "control.lab"), "control.lab")
    assert status == 200 and b"<title>reachprobe lab control</title>" in body
    for name in LAB_NAMES:
        for address in clean_lab.addresses(name):
            assert handshake(clean_lab, address, name) == "ok", (name, address)


def test_nothing_routes_outside_the_lab(clean_lab: Lab) -> None:
    for ns in clean_lab.namespaces[1:]:
        routes = subprocess.run(
            ["ip", "-n", ns, "route", "show", "default"], capture_output=True, text=True
        )
        assert routes.stdout.strip() == "", ns
    # the vantage's default route ends at the isp, which has no route onward
    assert connect(clean_lab, "192.0.2.1", 80) == "unreachable"


def hop_of(lab: Lab, ttl: int, address: str) -> str:
    """Who answers a UDP datagram to ``address`` sent from the vantage with IP TTL ``ttl``:
    the router that sends "time exceeded", read from the socket's error queue (IP_RECVERR,
    no raw socket needed), or "port-unreachable from X" once it reaches a host."""

    def send() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.connect((address, 33434))
            sock.send(b"reachprobe lab hop")
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                try:
                    _, ancdata, _, _ = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
                except BlockingIOError:
                    time.sleep(0.005)
                    continue
                for level, kind, data in ancdata:
                    if level == socket.IPPROTO_IP and kind == _IP_RECVERR:
                        # struct sock_extended_err (16 bytes), then the offender's sockaddr_in
                        icmp_type, code = data[5], data[6]
                        offender = socket.inet_ntoa(data[20:24])
                        name = "time-exceeded" if icmp_type == 11 else f"icmp{icmp_type}/{code}"
                        return f"{name} from {offender}"
            return "silence"

    return call_in(lab.vantage, send)


def test_the_censor_is_the_second_of_three_routers(clean_lab: Lab) -> None:
    """Hop 1 is the access router, hop 2 the isp (the censor), hop 3 the transit router,
    and the servers are 4 hops away; 30 probes in a burst are all answered (no ICMP rate
    limit in the routers), so a trace is not misled into seeing silent hops."""
    net = clean_lab.net
    target = first(clean_lab, "x.com")
    expected = [f"time-exceeded from {router}" for router in net.routers]
    assert [hop_of(clean_lab, ttl, target) for ttl in (1, 2, 3)] == expected
    assert hop_of(clean_lab, 4, target) == f"icmp3/3 from {target}"  # port unreachable
    assert [hop_of(clean_lab, 1 + i % 3, target) for i in range(30)] == expected * 10
    assert net.isp_resolver == net.routers[1]


def test_forged_dns_reply_is_a_valid_datagram() -> None:
    """The injector's hand-built packet: a reply dnspython accepts for the query, and a
    UDP checksum that verifies (the one's-complement sum over pseudo-header + UDP is 0)."""
    query = dns.message.make_query("X.com", "A", use_edns=0)
    question = query.to_wire()
    parsed = injector.parse_query(injector.udp_packet("10.9.1.2", 4242, "10.9.1.1", 53, question))
    assert parsed is not None and parsed[5:] == ("x.com", 1)
    payload = injector.forge_reply(parsed[4], "10.9.3.80")
    reply = dns.message.from_wire(payload)
    assert query.is_response(reply)
    assert [r.address for rr in reply.answer for r in rr] == ["10.9.3.80"]
    packet = injector.udp_packet("10.9.1.1", 53, "10.9.1.2", 4242, payload)
    udp = packet[20:]
    pseudo = packet[12:20] + bytes([0, 17]) + len(udp).to_bytes(2, "big")
    data = pseudo + udp + b"\0" * (len(udp) % 2)
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


# ----- each scenario's mechanism -----------------------------------------------------
def check_clean(lab: Lab) -> None:
    assert handshake(lab, first(lab, "x.com"), "x.com") == "ok"


def check_dns_nxdomain(lab: Lab) -> None:
    assert resolve(lab, lab.net.isp_resolver, "x.com") == ("NXDOMAIN", [])
    assert resolve(lab, lab.net.internet_resolver, "x.com")[1] == sorted(lab.addresses("x.com"))


def check_dns_bogon(lab: Lab) -> None:
    assert resolve(lab, lab.net.isp_resolver, "x.com") == ("NOERROR", ["127.0.0.1"])


def check_dns_blockpage(lab: Lab) -> None:
    assert resolve(lab, lab.net.isp_resolver, "x.com") == ("NOERROR", [lab.net.blockpage])
    status, body, _ = fetch(lab, lab.net.blockpage, "x.com")
    assert status == 200 and BLOCKPAGE_MARKER.encode() in body and BLOCKPAGE_TEXT.encode() in body


def check_dns_timeout(lab: Lab) -> None:
    assert resolve(lab, lab.net.isp_resolver, "x.com") == ("timeout", [])
    assert resolve(lab, lab.net.isp_resolver, "control.lab")[0] == "NOERROR"
    assert resolve(lab, lab.net.internet_resolver, "x.com")[0] == "NOERROR"


def check_rcode(rcode: str) -> Callable[[Lab], None]:
    def check(lab: Lab) -> None:
        assert resolve(lab, lab.net.isp_resolver, "x.com") == (rcode, [])
        assert resolve(lab, lab.net.isp_resolver, "twitter.com")[0] == "NOERROR"

    return check


def check_dns_injection(lab: Lab) -> None:
    forged, real = [lab.net.blockpage], sorted(lab.addresses("x.com"))
    for server in (lab.net.isp_resolver, lab.net.internet_resolver):
        assert every_reply(lab, server, "x.com") == [forged, real], server  # forged first
        assert every_reply(lab, server, "api.x.com") == [forged, sorted(lab.addresses("api.x.com"))]
        assert every_reply(lab, server, "control.lab") == [sorted(lab.addresses("control.lab"))]
    assert resolve(lab, lab.net.isp_resolver, "twitter.com")[1] == sorted(
        lab.addresses("twitter.com")
    )


def check_tcp_blackhole(lab: Lab) -> None:
    for address in lab.addresses("x.com"):
        assert connect(lab, address, 443) == "timeout"
    assert connect(lab, first(lab, "control.lab"), 443) == "ok"


def check_tcp_reset(lab: Lab) -> None:
    for address in lab.addresses("x.com"):
        assert connect(lab, address, 443) == "refused"
    assert connect(lab, first(lab, "control.lab"), 443) == "ok"


def check_sni_reset_reassembled(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert handshake(lab, address, "x.com") == "reset"
    assert handshake(lab, address, "control.lab") == "ok"
    assert handshake(lab, address, "api.x.com") == "ok"
    assert split_hello(lab, address, "x.com") == "reset"  # it reassembles the stream
    assert split_hello(lab, address, "control.lab") == "ok"


def check_sni_reset(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert connect(lab, address, 443) == "ok"
    assert handshake(lab, address, "x.com") == "reset"
    assert handshake(lab, address, "control.lab") == "ok"  # same address, another SNI
    assert handshake(lab, address, "api.x.com") == "ok"  # the match is exact, not a substring
    assert split_hello(lab, address, "x.com") == "ok"  # the string match sees one packet


def check_sni_drop(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert handshake(lab, address, "x.com") == "timeout"
    assert handshake(lab, address, "control.lab") == "ok"


def check_host_reset(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert attempt(lab, lambda: fetch(lab, address, "x.com")) == "reset"
    assert fetch(lab, address, "control.lab")[0] == 200  # same address, another Host
    assert handshake(lab, address, "x.com") == "ok"


def check_http_blockpage(lab: Lab) -> None:
    address = first(lab, "x.com")
    status, body, _ = fetch(lab, address, "x.com")
    assert status == 200 and BLOCKPAGE_MARKER.encode() in body
    status, body, _ = fetch(lab, address, "control.lab")  # spliced to the real server
    assert status == 200 and b"reachprobe lab control" in body
    status, body, _ = fetch(lab, address, "x.com", sni="x.com", budget=5)
    assert status == 200 and len(body) >= BIG_BODY_BYTES  # HTTPS untouched


def check_tls_intercept(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert handshake(lab, address, "x.com") == "cert"
    assert (
        handshake(lab, address, "x.com", cafile=lab.pki.rogue_ca_pem) == "ok"
    )  # the rogue CA's cert
    assert handshake(lab, address, "control.lab") == "ok"  # spliced to the real server
    assert handshake(lab, first(lab, "control.lab"), "x.com") == "cert"  # keyed on SNI, any address


def check_throttle(lab: Lab) -> None:
    address = first(lab, "x.com")
    # same server, same page: only the SNI differs (nginx picks the page by Host)
    _, free, free_s = fetch(lab, address, "x.com", sni="control.lab", budget=5)
    _, slow, slow_s = fetch(lab, address, "x.com", sni="x.com", budget=3)
    free_rate, slow_rate = len(free) / free_s, len(slow) / slow_s
    assert len(free) >= BIG_BODY_BYTES
    assert 2_000 < slow_rate < 50_000, slow_rate  # 20 KiB/s policer after a 32 KiB burst
    assert free_rate > 10 * slow_rate, (free_rate, slow_rate)


def check_uplink_cut(lab: Lab) -> None:
    assert resolve(lab, lab.net.internet_resolver, "x.com")[1] == []
    assert resolve(lab, lab.net.isp_resolver, "x.com")[1] == []
    assert connect(lab, first(lab, "control.lab"), 443) == "unreachable"


def check_server_down(lab: Lab) -> None:
    address = first(lab, "x.com")
    assert fetch(lab, address, "x.com", sni="x.com")[0] == 503  # valid certificate, then 503
    assert fetch(lab, address, "x.com")[0] == 503
    assert fetch(lab, first(lab, "control.lab"), "control.lab", sni="control.lab")[0] == 200


def check_partial_platform(lab: Lab) -> None:
    for name in ("abs.twimg.com", "pbs.twimg.com", "video.twimg.com"):
        assert handshake(lab, first(lab, name), name) == "reset", name
    for name in ("x.com", "api.x.com", "t.co"):
        assert handshake(lab, first(lab, name), name) == "ok", name


CHECKS: dict[str, Callable[[Lab], None]] = {
    "clean": check_clean,
    "dns_nxdomain": check_dns_nxdomain,
    "dns_bogon": check_dns_bogon,
    "dns_blockpage": check_dns_blockpage,
    "dns_timeout": check_dns_timeout,
    "dns_servfail": check_rcode("SERVFAIL"),
    "dns_refused": check_rcode("REFUSED"),
    "dns_injection": check_dns_injection,
    "tcp_blackhole": check_tcp_blackhole,
    "tcp_reset": check_tcp_reset,
    "sni_reset": check_sni_reset,
    "sni_drop": check_sni_drop,
    "sni_reset_reassembled": check_sni_reset_reassembled,
    "host_reset": check_host_reset,
    "http_blockpage": check_http_blockpage,
    "tls_intercept": check_tls_intercept,
    "throttle": check_throttle,
    "uplink_cut": check_uplink_cut,
    "server_down": check_server_down,
    "partial_platform": check_partial_platform,
}


def test_every_scenario_has_a_mechanism_check() -> None:
    assert set(CHECKS) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_scenario_mechanism(clean_lab: Lab, name: str) -> None:
    with applied(clean_lab, name):
        CHECKS[name](clean_lab)
    check_clean(clean_lab)  # and it was undone
    assert "RP-FWD" in clean_lab.iptables_dump()
