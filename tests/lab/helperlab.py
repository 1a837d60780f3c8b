"""The control helper in the lab, and sites whose faults are their own.

Additive to the topology: the helper (``probe helper serve``) runs in the
internet namespace on an address of its own inside the internet prefix, so
the vantage reaches it through the isp — where a scenario can block it like
any site.  Two extra sites live in a namespace of their own (``<run>-own``)
attached to the internet namespace (the internet's nginx holds the wildcard
ports 80 and 443 there), served by their own nginx:

* ``badcert.lab``: HTTPS with a certificate no one trusts (its own CA, not in
  the bundle the probe and the helper get): broken for everyone.
* ``moved.lab``: redirects http:// and https:// to ``https://example.com/``,
  another site, as firefox.com does to mozilla.org.

The lab CA's key is not kept after the lab starts, so ``moved.lab``'s
certificate comes from a second trusted CA; :func:`start` writes a bundle of
both (``HelperLab.ca_bundle``) for the probe and the helper.
"""

from __future__ import annotations

import atexit
import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.lab import servers
from tests.lab.certs import KeyPair, _write_leaf
from tests.lab.netns import ns_run, run
from tests.lab.topology import Lab

HELPER_PORT = 8080
HELPER_TIMEOUT = 2.0  # the helper answers before the probe's 4 s deadline
BADCERT = "badcert.lab"
MOVED = "moved.lab"
MOVED_TO = "https://example.com/"


@dataclass(frozen=True)
class HelperLab:
    lab: Lab
    helper_address: str
    ca_bundle: Path
    own: str  # the namespace of the own-fault sites

    def close(self) -> None:
        self.lab.stop("own-sites-nginx")
        run(["ip", "netns", "delete", self.own], check=False)

    @property
    def helper_url(self) -> str:
        return f"http://{self.helper_address}:{HELPER_PORT}/"

    def own_site(self, name: str) -> str:
        return self.lab.net.hosts[name][0]

    def probe_argv(
        self, domains: tuple[str, ...], timeout: float, helper: bool = True
    ) -> list[str]:
        argv = self.lab.probe_argv(domains, timeout=timeout)
        argv[argv.index("--ca-bundle") + 1] = str(self.ca_bundle)
        return [*argv, "--helper", self.helper_url] if helper else argv

    def block_helper(self) -> None:
        """The censor drops the vantage's packets to the helper (undone by lab.reset())."""
        self.lab.isp_rule(
            "filter", "RP-FWD", "-i", "to-vantage", "-d", self.helper_address, "-j", "DROP"
        )

    def down(self, name: str, up: bool = False) -> None:
        """Make ``name``'s server drop every TCP packet, whoever sends it (down everywhere)."""
        for address in self.lab.net.hosts[name]:
            ns_run(
                self.lab.internet, "iptables", "-w", "-D" if up else "-I", "INPUT",
                "-d", address, "-p", "tcp", "-j", "DROP",
            )  # fmt: skip


def start(lab: Lab) -> HelperLab:
    """Add the helper and the two own-fault sites to a running lab."""
    octet = lab.net.octet
    helper_address = f"10.{octet}.128.80"
    extra = {BADCERT: (f"10.{octet}.131.10",), MOVED: (f"10.{octet}.131.20",)}
    ns_run(lab.internet, "ip", "addr", "replace", f"{helper_address}/32", "dev", "lo")
    own = _attach_own_namespace(lab, [a for addrs in extra.values() for a in addrs])
    lab.net = dataclasses.replace(lab.net, hosts={**lab.net.hosts, **extra})
    lab.start_internet_resolver()  # now answers the extra names too

    trusted, untrusted = trustme.CA(), trustme.CA(organization_name="nobody trusts this")
    bundle = lab.directory / "helper-bundle.pem"
    bundle.write_bytes(lab.ca_pem.read_bytes() + trusted.cert_pem.bytes())
    moved = _write_leaf(trusted, (MOVED,), lab.directory, MOVED)
    bad = _write_leaf(untrusted, (BADCERT,), lab.directory, BADCERT)
    conf = _own_sites_conf(lab.directory, extra, moved, bad)
    ready = [f"{extra[BADCERT][0]}:443", f"{extra[MOVED][0]}:443"]
    lab.stop("own-sites-nginx")
    lab.processes["own-sites-nginx"] = servers.start_nginx(
        own, "own-sites-nginx", conf, lab.directory, ready
    )

    argv = [
        sys.executable, "-m", "probe", "helper", "serve",
        "--listen", f"{helper_address}:{HELPER_PORT}",
        "--resolver", lab.net.internet_resolver,
        "--ca-bundle", str(bundle),
        "--allow-private",  # the lab's sites have private addresses
        "--timeout", f"{HELPER_TIMEOUT:g}",
        "--rate", "10000",
    ]  # fmt: skip
    lab.stop("helper")
    proc = servers.spawn(lab.internet, "helper", argv, lab.directory)
    lab.processes["helper"] = servers.wait_ready(
        proc, lab.internet, tcp=[f"{helper_address}:{HELPER_PORT}"], timeout=30
    )
    started = HelperLab(lab, helper_address, bundle, own)
    atexit.register(started.close)  # like the lab's own namespaces: gone on any exit
    return started


def _attach_own_namespace(lab: Lab, addresses: list[str]) -> str:
    """A namespace behind the internet one (10.<octet>.66.0/24 link) holding ``addresses``."""
    own = f"{lab.run_id}-own"
    net = f"10.{lab.net.octet}"
    run(["ip", "netns", "add", own])
    run(["ip", "link", "add", "to-own", "netns", lab.internet, "type", "veth",
         "peer", "name", "to-internet", "netns", own])  # fmt: skip
    steps: list[tuple[str, ...]] = [
        (own, "ip", "link", "set", "lo", "up"),
        (own, "ip", "addr", "add", f"{net}.66.2/24", "dev", "to-internet"),
        (own, "ip", "link", "set", "to-internet", "up"),
        (own, "ip", "route", "add", "default", "via", f"{net}.66.1"),
        (lab.internet, "ip", "addr", "add", f"{net}.66.1/24", "dev", "to-own"),
        (lab.internet, "ip", "link", "set", "to-own", "up"),
        (lab.internet, "sysctl", "-qw", "net.ipv4.ip_forward=1"),
        *((own, "ip", "addr", "add", f"{a}/32", "dev", "lo") for a in addresses),
        *((lab.internet, "ip", "route", "add", f"{a}/32", "via", f"{net}.66.2") for a in addresses),
    ]
    for ns, *argv in steps:
        ns_run(ns, *argv)
    return own


def _own_sites_conf(
    directory: Path,
    addresses: Mapping[str, tuple[str, ...]],
    moved: KeyPair,
    bad: KeyPair,
) -> Path:
    page = "<html><head><title>Own fault</title></head><body>the site itself</body></html>"
    blocks = []
    for name, pair, https in (
        (BADCERT, bad, f'location / {{ return 200 "{page}"; }}'),
        (MOVED, moved, f"return 301 {MOVED_TO};"),
    ):
        address = addresses[name][0]
        http = "return 301 https://$host$request_uri;" if name == BADCERT else https
        blocks.append(f"    server {{ listen {address}:80; server_name {name}; {http} }}")
        blocks.append(
            f"    server {{ listen {address}:443 ssl; server_name {name};"
            f" ssl_certificate {pair.cert_chain}; ssl_certificate_key {pair.key}; {https} }}"
        )
    conf = servers._nginx_common(directory, "own-sites-nginx", 1) + "\n".join(blocks) + "\n}\n"
    path = directory / "own-sites-nginx.conf"
    path.write_text(conf)
    return path
