"""Censorship scenarios: each one a set of changes on top of the clean lab.

A scenario names its mechanism (``summary``, shown by ``python -m tests.lab
list`` and in docs/testing.md) and what a correct probe must conclude from the
vantage (``expect``). :func:`applied` applies it and always returns the lab
to clean afterwards, so one topology serves a whole test session.

All censorship happens in the isp namespace, on traffic from the vantage
(``-i to-vantage``): the control resolver and the sites themselves are never
touched, only the path to them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from tests.lab.topology import (
    DELAY_QUEUE,
    INJECTED_MARK,
    MIDDLEBOX_DNS,
    MIDDLEBOX_HTTP_PORT,
    MIDDLEBOX_TLS_PORT,
    REASSEMBLE_QUEUE,
    Lab,
)

TARGET = "x.com"
THROTTLE_MARK = "0x7a"
THROTTLE_RATE = "20kb/s"  # hashlimit byte units: ~20 KB/s each way, per flow
# how long the real A replies for the target are held: far beyond the injector's
# reaction time (< 5 ms measured), far inside the probe's 300 ms listening window
REAL_REPLY_DELAY_MS = 50


@dataclass(frozen=True)
class Expect:
    """What the probe must report for one domain."""

    verdict: str
    blocking: frozenset[str] = frozenset()
    exact: bool = True  # False: ``blocking`` must be included, more methods are fine
    trigger: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    apply: Callable[[Lab], None]
    expect: Expect
    exit_status: int
    domains: tuple[str, ...] = (TARGET,)
    platform: str | None = None
    by_suffix: Mapping[str, Expect] = field(default_factory=dict)  # per-domain exceptions

    def expect_for(self, domain: str) -> Expect:
        for suffix, expect in self.by_suffix.items():
            if domain == suffix.lstrip(".") or domain.endswith(suffix):
                return expect
        return self.expect


# ----- match builders -------------------------------------------------------------
def sni_hex(name: str) -> str:
    """The server_name entry exactly as it sits in a ClientHello: type 0, length, name.

    Matching the length prefix makes the rule exact (``x.com`` does not hit ``api.x.com``).
    """
    return f"|00{len(name):04x}|{name}"


def qname_hex(name: str, qtype: int | None = None) -> str:
    """The DNS wire form of ``name`` (then ``qtype``, if given, as in a question); it
    also matches subdomains, as DNS censors do."""
    labels = "".join(f"|{len(label):02x}|{label}" for label in name.split("."))
    return labels + ("|00|" if qtype is None else f"|00{qtype:04x}|")


def _string(hex_string: str, *, icase: bool = False) -> list[str]:
    return [
        "-m",
        "string",
        "--algo",
        "bm",
        "--to",
        "1500",
        *(["--icase"] if icase else []),
        "--hex-string",
        hex_string,
    ]


def _from_vantage(lab: Lab, *rule: str) -> None:
    lab.isp_rule("filter", "RP-FWD", "-i", "to-vantage", *rule)


# ----- mechanisms ------------------------------------------------------------------
def _nothing(lab: Lab) -> None:
    return None


def _poison(option: str) -> Callable[[Lab], None]:
    return lambda lab: lab.start_isp_resolver([option.format(blockpage=lab.net.blockpage)])


def _rcode(rcode: str) -> Callable[[Lab], None]:
    def apply(lab: Lab) -> None:
        lab.start_middlebox(["--dns", MIDDLEBOX_DNS, "--rcode", rcode])
        lab.start_isp_resolver([f"--server=/{TARGET}/{MIDDLEBOX_DNS.replace(':', '#')}"])

    return apply


def _dns_timeout(lab: Lab) -> None:
    for proto in ("udp", "tcp"):
        lab.isp_rule(
            "filter",
            "RP-IN",
            "-p",
            proto,
            "--dport",
            "53",
            *_string(qname_hex(TARGET), icase=True),
            "-j",
            "DROP",
        )


def _dns_injection(lab: Lab) -> None:
    """The injector forges x.com A answers (the blockpage address) for every resolver,
    and the real replies, the resolvers being farther away than the censor's tap, come
    later: in the lab the delayer holds them (the resolvers are microseconds away over
    veth, and the Python injector lost about half of the races without it)."""
    lab.start_injector([TARGET], lab.net.blockpage)
    lab.start_delayer(REAL_REPLY_DELAY_MS)
    lab.isp_rule(
        "mangle", "RP-POST", "-o", "to-vantage", "-p", "udp", "--sport", "53",
        "-m", "mark", "!", "--mark", hex(INJECTED_MARK),
        *_string(qname_hex(TARGET, qtype=1), icase=True),  # the question for x.com A
        "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE), "--queue-bypass",
    )  # fmt: skip


def _tcp_blackhole(lab: Lab) -> None:
    for address in lab.addresses(TARGET):
        _from_vantage(lab, "-d", address, "-j", "DROP")


def _tcp_reset(lab: Lab) -> None:
    for address in lab.addresses(TARGET):
        _from_vantage(
            lab, "-d", address, "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"
        )


def _sni(action: list[str], hex_string: str = sni_hex(TARGET)) -> Callable[[Lab], None]:
    return lambda lab: _from_vantage(
        lab, "-p", "tcp", "--dport", "443", *_string(hex_string), *action
    )


_RESET = ["-j", "REJECT", "--reject-with", "tcp-reset"]


def _sni_reassembled(lab: Lab) -> None:
    """The vantage's TLS packets go through the reassembling censor (no string match)."""
    lab.start_reassembler([TARGET])
    _from_vantage(
        lab, "-p", "tcp", "--dport", "443",
        "-j", "NFQUEUE", "--queue-num", str(REASSEMBLE_QUEUE), "--queue-bypass",
    )  # fmt: skip


def _host_reset(lab: Lab) -> None:
    _from_vantage(
        lab, "-p", "tcp", "--dport", "80", *_string(f"Host: {TARGET}|0d0a|", icase=True), *_RESET
    )


def _to_middlebox(lab: Lab, port: int, middlebox_port: int) -> None:
    """Send the vantage's traffic to ``port`` through the isp's middlebox."""
    lab.isp_rule(
        "nat", "RP-PRE", "-i", "to-vantage", "-p", "tcp", "--dport", str(port),
        "-j", "REDIRECT", "--to-ports", str(middlebox_port),
    )  # fmt: skip


def _http_blockpage(lab: Lab) -> None:
    page = str(lab.blockpage_file)
    lab.start_middlebox(
        ["--http", str(MIDDLEBOX_HTTP_PORT), "--block-host", TARGET, "--blockpage", page]
    )
    _to_middlebox(lab, 80, MIDDLEBOX_HTTP_PORT)


def _tls_intercept(lab: Lab) -> None:
    rogue = lab.pki.rogue
    lab.start_middlebox(
        [
            "--tls",
            str(MIDDLEBOX_TLS_PORT),
            "--intercept-sni",
            TARGET,
            "--cert",
            str(rogue.cert_chain),
            "--key",
            str(rogue.key),
        ]
    )
    _to_middlebox(lab, 443, MIDDLEBOX_TLS_PORT)


def _throttle(lab: Lab) -> None:
    _sni(["-j", "CONNMARK", "--set-mark", THROTTLE_MARK])(lab)
    lab.isp_rule(
        "filter", "RP-FWD", "-m", "connmark", "--mark", THROTTLE_MARK,
        "-m", "hashlimit", "--hashlimit-name", "rp-throttle", "--hashlimit-above", THROTTLE_RATE,
        "--hashlimit-burst", "32kb", "--hashlimit-mode", "srcip,srcport,dstip,dstport",
        "-j", "DROP",
    )  # fmt: skip


def _uplink_cut(lab: Lab) -> None:
    lab.set_uplink(False)


def _server_down(lab: Lab) -> None:
    lab.start_web(down=(TARGET,))


def _blocked(*methods: str, trigger: str, exact: bool = True) -> Expect:
    return Expect("blocked", frozenset(methods), exact, trigger)


_ACCESSIBLE = Expect("accessible")

_TWIMG = {".twimg.com": _blocked("tls.reset", trigger="sni")}
_SCENARIO_LIST = (
    Scenario("clean", "no interference", _nothing, _ACCESSIBLE, 0),
    Scenario(
        "dns_nxdomain",
        "ISP dnsmasq: address=/x.com/ -> NXDOMAIN",
        _poison("--address=/x.com/"),
        _blocked("dns.nxdomain", trigger="dns"),
        1,
    ),
    Scenario(
        "dns_bogon",
        "ISP dnsmasq: address=/x.com/127.0.0.1",
        _poison("--address=/x.com/127.0.0.1"),
        _blocked("dns.bogon", trigger="dns"),
        1,
    ),
    Scenario(
        "dns_blockpage",
        "ISP dnsmasq answers the ISP blockpage server's address",
        _poison("--address=/x.com/{blockpage}"),
        _blocked("http.blockpage", trigger="dns", exact=False),
        1,
    ),
    Scenario(
        "dns_timeout",
        "isp INPUT drops DNS queries whose qname contains x.com",
        _dns_timeout,
        _blocked("dns.timeout", trigger="dns"),
        1,
    ),
    Scenario(
        "dns_servfail",
        "ISP dnsmasq forwards x.com to an upstream answering SERVFAIL",
        _rcode("SERVFAIL"),
        _blocked("dns.servfail", trigger="dns"),
        1,
    ),
    Scenario(
        "dns_refused",
        "ISP dnsmasq forwards x.com to an upstream answering REFUSED",
        _rcode("REFUSED"),
        _blocked("dns.refused", trigger="dns"),
        1,
    ),
    Scenario(
        "dns_injection",
        "on-path injector forges x.com A replies (the blockpage address) for every resolver;"
        " the real replies arrive ~50 ms later",
        _dns_injection,
        # Exact: the control resolver's A query crosses the isp too and is injected, so
        # it cannot vouch for any address; the forged blockpage address is a bogon here
        # (10/8) without a valid certificate, hence judged bad, and fetching it by HTTP
        # yields the blockpage. Whichever reply wins each race, the set is the same.
        _blocked("dns.injection", "http.blockpage", trigger="dns"),
        1,
    ),
    Scenario(
        "tcp_blackhole",
        "FORWARD drops everything to x.com's addresses",
        _tcp_blackhole,
        _blocked("tcp.timeout", trigger="ip"),
        1,
    ),
    Scenario(
        "tcp_reset",
        "FORWARD answers SYNs to x.com's addresses with RST",
        _tcp_reset,
        _blocked("tcp.refused", trigger="ip"),
        1,
    ),
    Scenario(
        "sni_reset",
        "FORWARD: ClientHello with SNI x.com -> RST",
        _sni(_RESET),
        _blocked("tls.reset", trigger="sni"),
        1,
    ),
    Scenario(
        "sni_drop",
        "FORWARD: ClientHello with SNI x.com -> dropped",
        _sni(["-j", "DROP"]),
        _blocked("tls.timeout", trigger="sni"),
        1,
    ),
    Scenario(
        "sni_reset_reassembled",
        "NFQUEUE censor reassembles the TLS stream: ClientHello with SNI x.com, even split"
        " across TCP segments or TLS records -> RST",
        _sni_reassembled,
        _blocked("tls.reset", trigger="sni"),
        1,
    ),
    Scenario(
        "host_reset",
        "FORWARD: HTTP request with 'Host: x.com' -> RST",
        _host_reset,
        _blocked("http.reset", trigger="host"),
        1,
    ),
    Scenario(
        "http_blockpage",
        "port 80 REDIRECTed to a proxy serving the blockpage for Host x.com",
        _http_blockpage,
        _blocked("http.blockpage", trigger="host"),
        1,
    ),
    Scenario(
        "tls_intercept",
        "port 443 REDIRECTed to a proxy presenting a rogue-CA cert for SNI x.com",
        _tls_intercept,
        _blocked("tls.invalid_cert", trigger="sni"),
        1,
    ),
    Scenario(
        "throttle",
        f"flows with SNI x.com CONNMARKed and policed to {THROTTLE_RATE} (KiB) by hashlimit",
        _throttle,
        _blocked("throttle", trigger="sni"),
        1,
    ),
    Scenario(
        "uplink_cut",
        "the isp's link to the internet is down",
        _uplink_cut,
        Expect("offline"),
        3,
    ),
    Scenario(
        "server_down",
        "x.com's own servers answer 503 (valid TLS) on http and https",
        _server_down,
        Expect("down"),
        3,
    ),
    Scenario(
        "partial_platform",
        "FORWARD: ClientHello with SNI containing twimg.com -> RST (--platform x)",
        _sni(_RESET, "twimg.com"),
        _ACCESSIBLE,
        1,
        domains=(),
        platform="x",
        by_suffix=_TWIMG,
    ),
)
SCENARIOS: dict[str, Scenario] = {s.name: s for s in _SCENARIO_LIST}


@contextlib.contextmanager
def blocked_names(
    lab: Lab, timeouts: Sequence[str] = (), resets: Sequence[str] = ()
) -> Iterator[None]:
    """Per-name IP blocking for list runs on the catch-all site: the ``timeouts``
    names resolve (from every resolver) to addresses whose packets the isp drops,
    the ``resets`` names to addresses whose SYNs it answers with RST; every other
    list name stays a working site. The lab is clean again afterwards."""
    moved = [
        f"--address=/{name}/{address}"
        for names, addresses in ((timeouts, lab.net.blackholed), (resets, lab.net.refusing))
        for name in names
        for address in addresses
    ]
    try:
        lab.start_internet_resolver(moved)
        for address in lab.net.blackholed:
            _from_vantage(lab, "-d", address, "-j", "DROP")
        for address in lab.net.refusing:
            _from_vantage(lab, "-d", address, "-p", "tcp", "--syn", *_RESET)
        yield
    finally:
        lab.reset()


@contextlib.contextmanager
def applied(lab: Lab, name: str) -> Iterator[Scenario]:
    """Apply scenario ``name`` to a clean lab and restore the clean lab afterwards."""
    scenario = SCENARIOS[name]
    try:
        scenario.apply(lab)
        yield scenario
    finally:
        lab.reset()
