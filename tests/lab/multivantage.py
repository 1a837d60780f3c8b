"""A second ISP and vantage, and a collector host, attached to a running lab.

    vantage ── access ── isp (censor) ──┐
                                        transit ── internet (sites, resolver, collector)
    vantage2 ──────────── isp2 ─────────┘

Additive (docs/testing.md, lab growth rule): two more namespaces and one more
link to the transit router, plus one address on the internet namespace for
the collector; nothing of the main line changes, so every scenario still
applies to the first vantage only. The second ISP does not censor and uses
the internet's resolver, so the same probe run from the two vantages sees a
blocking and a non-blocking network.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tests.lab.netns import ns_run as _ns_run
from tests.lab.netns import run
from tests.lab.topology import ROUTER_SYSCTLS, Lab

COLLECTOR_PORT = 8500


@dataclass(frozen=True)
class SecondVantage:
    """The attached namespaces and addresses."""

    lab: Lab
    vantage: str  # namespace of the second vantage
    isp: str  # namespace of its (uncensored) ISP router
    address: str  # the second vantage's address
    collector: str  # the collector's address, in the internet namespace

    @property
    def collector_url(self) -> str:
        return f"http://{self.collector}:{COLLECTOR_PORT}"

    def check_argv(self, ns: str, domains: Sequence[str], db: str, vantage: str) -> list[str]:
        """``probe check`` from namespace ``ns`` (either vantage), stored in ``db``."""
        net = self.lab.net
        resolver = net.isp_resolver if ns == self.lab.vantage else net.internet_resolver
        return [
            "ip", "netns", "exec", ns, sys.executable, "-m", "probe", "check", *domains,
            "--resolver", resolver,
            "--control-resolver", net.internet_resolver,
            "--ca-bundle", str(self.lab.ca_pem),
            "--control-domain", "control.lab",
            "--control-domain", "example.com",
            "--control-sni", "control.lab",
            "--timeout", "4",
            "--db", db,
            "--vantage", vantage,
        ]  # fmt: skip

    def close(self) -> None:
        for ns in (self.vantage, self.isp):
            run(["ip", "netns", "delete", ns], check=False)
        with contextlib.suppress(Exception):
            _ns_run(self.lab.transit, "ip", "link", "delete", "to-isp2")
        with contextlib.suppress(Exception):
            _ns_run(self.lab.internet, "ip", "addr", "del", f"{self.collector}/32", "dev", "lo")


def attach(lab: Lab) -> SecondVantage:
    """Build the second ISP and vantage and the collector address; see the module doc."""
    net = f"10.{lab.net.octet}"
    second = SecondVantage(
        lab=lab,
        vantage=lab.ns("vantage2"),
        isp=lab.ns("isp2"),
        address=f"{net}.6.2",
        collector=f"{net}.131.10",  # inside the internet prefix: routed like the sites
    )
    atexit.register(second.close)
    try:
        for ns in (second.vantage, second.isp):
            run(["ip", "netns", "add", ns])
            _ns_run(ns, "ip", "link", "set", "lo", "up")
        links = (
            ((second.vantage, "to-isp", second.address), (second.isp, "to-vantage", f"{net}.6.1")),
            ((second.isp, "to-internet", f"{net}.7.1"), (lab.transit, "to-isp2", f"{net}.7.2")),
        )
        for (a_ns, a_if, a_addr), (b_ns, b_if, b_addr) in links:
            run(["ip", "link", "add", a_if, "netns", a_ns, "type", "veth",
                 "peer", "name", b_if, "netns", b_ns])  # fmt: skip
            for ns, interface, address in ((a_ns, a_if, a_addr), (b_ns, b_if, b_addr)):
                _ns_run(ns, "ip", "addr", "add", f"{address}/24", "dev", interface)
                _ns_run(ns, "ip", "link", "set", interface, "up")
        _ns_run(second.isp, "sysctl", "-qw", *ROUTER_SYSCTLS)
        _ns_run(second.vantage, "ip", "route", "add", "default", "via", f"{net}.6.1")
        _ns_run(second.isp, "ip", "route", "add", lab.net.supernet, "via", f"{net}.7.2")
        _ns_run(lab.transit, "ip", "route", "add", f"{net}.6.0/24", "via", f"{net}.7.1")
        _ns_run(lab.internet, "ip", "addr", "add", f"{second.collector}/32", "dev", "lo")
    except BaseException:
        second.close()
        raise
    return second


@contextlib.contextmanager
def attached(lab: Lab) -> Iterator[SecondVantage]:
    second = attach(lab)
    try:
        yield second
    finally:
        second.close()
