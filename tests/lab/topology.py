"""The lab topology: five namespaces in a line, and the :class:`Lab` handle.

    vantage ── access (router) ── isp (router + censor) ── transit (router) ── internet
                                                                      (resolver + sites)

The censor is deliberately not the vantage's first router, and not the last one
before the servers: ``probe trace`` must find it at hop 2 (access = hop 1,
transit = hop 3, the servers are 4 hops away), as it would on a real path. The
namespaces and their links are data (:data:`ROUTERS`, :func:`_links`), so a
helper adding a host attaches one more namespace and link without touching these.

Addresses are private (10.<octet>.0.0/16, octet random per run), namespace
names carry a random suffix, and nothing has a route outside 10.<octet>/16,
so runs never collide and no packet can leave the machine. Every lab ever
started in this process is torn down at exit, on SIGTERM/SIGHUP, and by the
fixtures that own it.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import signal
import sys
import tempfile
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import delayer, injector, reassembler, servers
from tests.lab.certs import LabPKI, create_pki
from tests.lab.netns import LabError, ns_run, run
from tests.lab.servers import Process

X_NAMES: tuple[str, ...] = (
    "x.com",
    "twitter.com",
    "api.x.com",
    "api.twitter.com",
    "upload.x.com",
    "t.co",
    "abs.twimg.com",
    "abs-0.twimg.com",
    "pbs.twimg.com",
    "video.twimg.com",
    "ton.twimg.com",
)
CONTROL_NAMES: tuple[str, ...] = ("control.lab", "example.com")
LAB_NAMES: tuple[str, ...] = X_NAMES + CONTROL_NAMES
MIDDLEBOX_HTTP_PORT = 8080
MIDDLEBOX_TLS_PORT = 8443
MIDDLEBOX_DNS = "127.0.0.1:5353"
# The scenario rules live in these chains only, so removing a scenario is a flush.
CHAINS = (
    ("filter", "RP-FWD", "FORWARD"),
    ("filter", "RP-IN", "INPUT"),
    ("nat", "RP-PRE", "PREROUTING"),
    ("mangle", "RP-POST", "POSTROUTING"),
)
# NFQUEUE number whose packets the delayer holds (rules add --queue-bypass)
DELAY_QUEUE = 7
# NFQUEUE number whose packets the reassembling censor inspects
REASSEMBLE_QUEUE = 8
# SO_MARK of the injector's forged packets, so rules can tell them from real ones
INJECTED_MARK = 0x1D


@dataclass(frozen=True)
class Addressing:
    """Every address of one lab run; deterministic given ``octet``."""

    octet: int
    vantage: str  # the probe's address, on the vantage-access link
    gateway: str  # the access router on that link: the vantage's default route (hop 1)
    access_wan: str  # the access router on the access-isp link
    isp_lan: str  # the isp on that link (hop 2): its resolver, middlebox, ICMP source
    isp_resolver: str  # the ISP's dnsmasq (pass as --resolver)
    isp_wan: str  # the isp on the isp-transit link
    transit_lan: str  # the transit router on that link (hop 3)
    transit_wan: str  # the transit router on the transit-internet link
    internet_wan: str  # the internet namespace on that link
    internet_resolver: str  # authoritative for the lab names (pass as --control-resolver)
    blockpage: str  # the ISP's blockpage server
    internet_prefix: str  # everything behind the internet namespace
    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> IPv4 addresses
    catch_all: tuple[str, ...] = ()  # the catch-all site (used only when the lab has one)
    # addresses the isp blackholes / answers with RST, for per-name blocking in list runs
    blackholed: tuple[str, ...] = ()
    refusing: tuple[str, ...] = ()

    @classmethod
    def plan(cls, octet: int) -> Addressing:
        net = f"10.{octet}"
        hosts = {
            name: (f"{net}.129.{10 * i + 10}", f"{net}.129.{10 * i + 11}")
            for i, name in enumerate(LAB_NAMES)
        }
        return cls(
            octet=octet,
            vantage=f"{net}.1.2",
            gateway=f"{net}.1.1",
            access_wan=f"{net}.4.2",
            isp_lan=f"{net}.4.1",
            isp_resolver=f"{net}.4.1",
            isp_wan=f"{net}.2.1",
            transit_lan=f"{net}.2.2",
            transit_wan=f"{net}.5.1",
            internet_wan=f"{net}.5.2",
            internet_resolver=f"{net}.128.53",
            blockpage=f"{net}.3.80",
            internet_prefix=f"{net}.128.0/17",
            hosts=hosts,
            catch_all=(f"{net}.130.10", f"{net}.130.11"),
            blackholed=(f"{net}.131.10", f"{net}.131.11"),
            refusing=(f"{net}.132.10", f"{net}.132.11"),
        )

    @property
    def supernet(self) -> str:
        """The whole lab; no namespace has a route beyond it (the vantage's default
        route ends at the access router, which has none)."""
        return f"10.{self.octet}.0.0/16"

    @property
    def routers(self) -> tuple[str, ...]:
        """The address each router answers a TTL-limited probe from, hop 1 first; the
        servers are one hop beyond the last."""
        return (self.gateway, self.isp_lan, self.transit_lan)


@dataclass(frozen=True)
class Link:
    """One veth pair, a /24: ``(namespace role, interface, address)`` at each end."""

    a: tuple[str, str, str]
    b: tuple[str, str, str]


def _links(net: Addressing) -> tuple[Link, ...]:
    """The line of links, vantage to internet. Interface names say where they lead,
    so the censor's rules keep matching ``-i to-vantage`` / ``-o to-internet``."""
    return (
        Link(("vantage", "to-isp", net.vantage), ("access", "to-vantage", net.gateway)),
        Link(("access", "to-isp", net.access_wan), ("isp", "to-vantage", net.isp_lan)),
        Link(("isp", "to-internet", net.isp_wan), ("transit", "to-isp", net.transit_lan)),
        Link(("transit", "to-internet", net.transit_wan), ("internet", "to-isp", net.internet_wan)),
    )


def _routes(net: Addressing) -> tuple[tuple[str, str, str], ...]:
    """``(namespace role, prefix, via)``: toward the internet prefix, and back to the lab."""
    vantage_side = f"10.{net.octet}.1.0/24"
    return (
        ("vantage", "default", net.gateway),
        ("access", net.supernet, net.isp_lan),
        ("isp", vantage_side, net.access_wan),
        ("isp", net.internet_prefix, net.transit_lan),
        ("transit", net.internet_prefix, net.internet_wan),
        ("transit", net.supernet, net.isp_wan),
        ("internet", net.supernet, net.transit_wan),
    )


# The namespaces that forward, and the ICMP settings that make every one of them answer
# each TTL-limited probe: Linux rate-limits ICMP errors per destination
# (icmp_ratelimit, 1 s with a burst of 6) and globally (icmp_msgs_per_sec), which would
# turn a fast trace's later probes into silence.
ROUTERS = ("access", "isp", "transit")
ROUTER_SYSCTLS = (
    "net.ipv4.ip_forward=1",
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=100000",
    "net.ipv4.icmp_msgs_burst=100000",
)


class Lab:
    """A running lab: namespaces, servers, and the knobs scenarios turn.

    The namespace names, addresses, CA and directory are plain attributes;
    methods restart servers with different settings and edit the censor's
    iptables chains. ``close()`` is idempotent.
    """

    def __init__(
        self,
        run_id: str,
        directory: Path,
        net: Addressing,
        pki: LabPKI,
        sites: Path,
        catch_all: Sequence[str] = (),
    ) -> None:
        self.run_id = run_id
        self.directory = directory
        self.net = net
        self.pki = pki
        self.sites = sites
        self.vantage = f"{run_id}-vantage"
        self.access = f"{run_id}-access"  # the vantage's first router (hop 1)
        self.isp = f"{run_id}-isp"  # router and censor (hop 2)
        self.transit = f"{run_id}-transit"  # the router before the servers (hop 3)
        self.internet = f"{run_id}-internet"
        self.catch_all = tuple(catch_all)  # names the catch-all site has a certificate for
        self.processes: dict[str, Process] = {}
        self.isp_overrides: tuple[str, ...] = ()  # current poison of the ISP resolver
        self.internet_overrides: tuple[str, ...] = ()  # names moved to other addresses
        self.web_down: tuple[str, ...] = ()  # names currently answering 503
        self.uplink_up = True
        self._closed = False

    # ----- facts the tests need -------------------------------------------------
    @property
    def ca_pem(self) -> Path:
        return self.pki.ca_pem

    @property
    def blockpage_file(self) -> Path:
        return self.directory / "blockpage.html"  # written by servers.blockpage_nginx_conf

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace of the line, vantage first."""
        return (self.vantage, self.access, self.isp, self.transit, self.internet)

    def ns(self, role: str) -> str:
        """The namespace of a role named in :func:`_links` ("vantage", "access", ...)."""
        return f"{self.run_id}-{role}"

    def addresses(self, name: str) -> tuple[str, ...]:
        return self.net.hosts[name]

    def check_flags(self, timeout: float = 4) -> list[str]:
        """What points ``probe check`` at the lab: its resolvers, CA and control sites."""
        return [
            "--resolver", self.net.isp_resolver,
            "--control-resolver", self.net.internet_resolver,
            "--ca-bundle", str(self.ca_pem),
            "--control-domain", "control.lab",
            "--control-domain", "example.com",
            "--control-sni", "control.lab",
            "--timeout", f"{timeout:g}",
        ]  # fmt: skip

    def probe_argv(
        self, domains: Sequence[str], *, platform: str | None = None, timeout: float = 4
    ) -> list[str]:
        """The documented probe invocation, run inside the vantage namespace."""
        argv = [
            "ip", "netns", "exec", self.vantage, sys.executable, "-m", "probe", "check", *domains,
            *self.check_flags(timeout), "--json", "--no-store",
        ]  # fmt: skip
        if platform is not None:
            argv += ["--platform", platform]
        return argv

    # ----- servers ----------------------------------------------------------------
    def _replace(self, proc: Process) -> Process:
        self.stop(proc.name)
        self.processes[proc.name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            proc.stop()

    def start_internet_resolver(self, overrides: Sequence[str] = ()) -> None:
        """(Re)start the authoritative resolver; ``overrides`` are extra dnsmasq
        options (e.g. ``--address=/name/IP``: a list name served elsewhere)."""
        self.stop("internet-dnsmasq")
        self.internet_overrides = tuple(overrides)
        # --local=/#/: answer only from the records, NXDOMAIN for unknown names and
        # NODATA for AAAA, as an authoritative server would; with a catch-all site,
        # unknown names get its addresses instead (AAAA still NODATA)
        records = [*servers.host_records(self.net.hosts), "--local=/#/"]
        if self.catch_all:
            records += [f"--address=/#/{address}" for address in self.net.catch_all]
        records += overrides
        self._replace(
            servers.start_dnsmasq(
                self.internet,
                "internet-dnsmasq",
                self.net.internet_resolver,
                self.directory,
                records,
            )
        )

    def start_isp_resolver(self, overrides: Sequence[str] = ()) -> None:
        """(Re)start the ISP resolver: it forwards to the internet resolver, unless poisoned."""
        self.stop("isp-dnsmasq")
        self.isp_overrides = tuple(overrides)
        records = [f"--server={self.net.internet_resolver}", *overrides]
        self._replace(
            servers.start_dnsmasq(
                self.isp, "isp-dnsmasq", self.net.isp_resolver, self.directory, records
            )
        )

    def start_web(self, down: Sequence[str] = ()) -> None:
        """(Re)start the internet's nginx; ``down`` names answer 503 on http and https."""
        self.stop("internet-nginx")
        self.web_down = tuple(down)
        conf = servers.internet_nginx_conf(
            self.directory,
            self.sites,
            redirecting=X_NAMES,
            plain=CONTROL_NAMES,
            down=down,
            cert=self.pki.server,
            catch_all=(self.net.catch_all, self.pki.catch_all) if self.pki.catch_all else None,
        )
        ready = [f"{self.net.hosts['x.com'][0]}:443", f"{self.net.hosts['control.lab'][0]}:80"]
        ready += [f"{a}:443" for a in self.net.catch_all if self.catch_all]
        self._replace(
            servers.start_nginx(self.internet, "internet-nginx", conf, self.directory, ready)
        )

    def start_blockpage(self) -> None:
        conf = servers.blockpage_nginx_conf(self.directory, self.net.blockpage)
        self._replace(
            servers.start_nginx(
                self.isp, "blockpage-nginx", conf, self.directory, [f"{self.net.blockpage}:80"]
            )
        )

    def start_middlebox(self, args: Sequence[str]) -> None:
        """Start the isp's user-space censor (see :mod:`tests.lab.middlebox`)."""
        tcp = []  # REDIRECT delivers to the address of the interface the flow came in on
        if "--http" in args:
            tcp.append(f"{self.net.isp_lan}:{MIDDLEBOX_HTTP_PORT}")
        if "--tls" in args:
            tcp.append(f"{self.net.isp_lan}:{MIDDLEBOX_TLS_PORT}")
        udp = [MIDDLEBOX_DNS] if "--dns" in args else []
        self._replace(servers.start_middlebox(self.isp, self.directory, args, tcp, udp))

    def start_injector(self, names: Sequence[str], answer: str) -> None:
        """Start the isp's on-path DNS injector (see :mod:`tests.lab.injector`): it
        watches queries arriving from the vantage and races the resolvers with ``answer``."""
        args = ["--interface", "to-vantage", "--answer", answer, "--mark", str(INJECTED_MARK)]
        args += [arg for name in names for arg in ("--name", name)]
        self._replace(
            servers.start_watcher(
                self.isp, "injector", "tests.lab.injector", args, injector.READY, self.directory
            )
        )

    def start_delayer(self, delay_ms: float) -> None:
        """Hold what the isp's rules send to NFQUEUE ``DELAY_QUEUE`` for ``delay_ms``
        (see :mod:`tests.lab.delayer`): distance the veth links do not have."""
        args = ["--queue", str(DELAY_QUEUE), "--delay-ms", f"{delay_ms:g}"]
        self._replace(
            servers.start_watcher(
                self.isp, "delayer", "tests.lab.delayer", args, delayer.READY, self.directory
            )
        )

    def start_reassembler(self, names: Sequence[str]) -> None:
        """Inspect what the isp's rules send to NFQUEUE ``REASSEMBLE_QUEUE`` as a TLS
        stream (see :mod:`tests.lab.reassembler`): the censor that reassembles."""
        args = ["--queue", str(REASSEMBLE_QUEUE), *(a for n in names for a in ("--name", n))]
        self._replace(
            servers.start_watcher(
                self.isp, "reassembler", "tests.lab.reassembler", args, reassembler.READY,
                self.directory,
            )
        )  # fmt: skip

    # ----- the censor's packet filter --------------------------------------------
    def isp_rule(self, table: str, chain: str, *rule: str) -> None:
        ns_run(self.isp, "iptables", "-w", "-t", table, "-A", chain, *rule)

    def flush_rules(self) -> None:
        for table, chain, _ in CHAINS:
            ns_run(self.isp, "iptables", "-w", "-t", table, "-F", chain)

    def reset(self) -> None:
        """Back to the clean lab: whatever a scenario changed is undone."""
        self.flush_rules()
        self.stop("middlebox")
        self.stop("injector")
        self.stop("delayer")
        self.stop("reassembler")
        if not self.uplink_up:
            self.set_uplink(True)
        if self.isp_overrides:
            self.start_isp_resolver()
        if self.internet_overrides:
            self.start_internet_resolver()
        if self.web_down:
            self.start_web()

    def iptables_dump(self) -> str:
        return ns_run(self.isp, "iptables-save", check=False)

    def set_uplink(self, up: bool) -> None:
        """Bring the isp's link to the internet down (offline) or back up with its route."""
        ns_run(self.isp, "ip", "link", "set", "to-internet", "up" if up else "down")
        self.uplink_up = up
        if up:
            ns_run(
                self.isp,
                "ip",
                "route",
                "replace",
                self.net.internet_prefix,
                "via",
                self.net.transit_lan,
            )

    # ----- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop(name)
        for ns in self.namespaces:
            run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)


_LIVE: list[Lab] = []


def close_all() -> None:
    for lab in list(_LIVE):
        lab.close()


def _on_signal(signum: int, frame: types.FrameType | None) -> None:
    close_all()
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    atexit.register(close_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: atexit and finalizers remain
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def _build_network(lab: Lab) -> None:
    net = lab.net
    for ns in lab.namespaces:
        run(["ip", "netns", "add", ns])
        ns_run(ns, "ip", "link", "set", "lo", "up")
    for link in _links(net):
        (a_role, a_if, _), (b_role, b_if, _) = link.a, link.b
        run(
            ["ip", "link", "add", a_if, "netns", lab.ns(a_role), "type", "veth",
             "peer", "name", b_if, "netns", lab.ns(b_role)]
        )  # fmt: skip
        for role, interface, address in (link.a, link.b):
            ns_run(lab.ns(role), "ip", "addr", "add", f"{address}/24", "dev", interface)
            ns_run(lab.ns(role), "ip", "link", "set", interface, "up")
    for role in ROUTERS:
        ns_run(lab.ns(role), "sysctl", "-qw", *ROUTER_SYSCTLS)
    for role, prefix, via in _routes(net):
        ns_run(lab.ns(role), "ip", "route", "add", prefix, "via", via)
    local = [(lab.isp, net.blockpage), (lab.internet, net.internet_resolver)]
    local += [(lab.internet, a) for addrs in (*net.hosts.values(), net.catch_all) for a in addrs]
    for ns, address in local:
        ns_run(ns, "ip", "addr", "add", f"{address}/32", "dev", "lo")
    for table, chain, parent in CHAINS:
        ns_run(lab.isp, "iptables", "-w", "-t", table, "-N", chain)
        ns_run(lab.isp, "iptables", "-w", "-t", table, "-A", parent, "-j", chain)


def start_lab(prefix: str = "rp", catch_all: Sequence[str] = ()) -> Lab:
    """Build the topology and start every server of the clean lab.

    ``catch_all`` (e.g. every domain of a test list) turns on the catch-all site: the
    internet resolver answers any unknown name with its addresses, and it serves any
    host with a certificate valid for these names. Off by default, so an unknown name
    stays NXDOMAIN from both resolvers (a domain that does not exist, not a site with a
    wrong certificate)."""
    _install_cleanup()
    run_id = f"{prefix}{secrets.token_hex(3)}"
    directory = Path(tempfile.mkdtemp(prefix=f"reachprobe-lab-{run_id}-"))
    net = Addressing.plan(16 + secrets.randbelow(224))
    try:
        extra = tuple(dict.fromkeys(n for n in catch_all if n not in LAB_NAMES))
        pki = create_pki(directory, LAB_NAMES, extra)
        sites = servers.write_sites(directory, LAB_NAMES)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    lab = Lab(run_id, directory, net, pki, sites, extra)
    _LIVE.append(lab)
    try:
        _build_network(lab)
        lab.start_internet_resolver()
        lab.start_web()
        lab.start_isp_resolver()
        lab.start_blockpage()
    except BaseException:
        lab.close()
        raise
    return lab


@contextlib.contextmanager
def running_lab(prefix: str = "rp", catch_all: Sequence[str] = ()) -> Iterator[Lab]:
    lab = start_lab(prefix, catch_all)
    try:
        yield lab
    finally:
        lab.close()


__all__ = [
    "CONTROL_NAMES",
    "LAB_NAMES",
    "X_NAMES",
    "Addressing",
    "Lab",
    "LabError",
    "running_lab",
    "start_lab",
]
