"""The lab's server processes: dnsmasq resolvers, nginx sites, the middlebox.

Every process runs under ``ip netns exec`` in its own session (so a Ctrl-C in
the developer shell does not reach it), logs to a file in the lab directory,
and is only considered started once it answers on its port; :meth:`Process.stop`
terminates and *waits*, so nothing outlives the lab.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.certs import KeyPair
from tests.lab.netns import LabError, call_in, ns_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKPAGE_MARKER = "reachprobe-lab-blockpage"
BLOCKPAGE_TEXT = "This site is prohibited for viewership from within Pakistan"
BIG_BODY_BYTES = 512 * 1024
TITLES = {
    "x.com": "X. It's what's happening / X",
    "control.lab": "reachprobe lab control",
    "example.com": "Example Domain",
}


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5) -> None:
        """Terminate and reap; escalate to SIGKILL if it ignores SIGTERM."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


def spawn(ns: str, name: str, argv: Sequence[str], directory: Path) -> Process:
    log = directory / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            ns_argv(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    return Process(name=name, popen=popen, log=log)


def _wait(proc: Process, ns: str, probe_once: str, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise LabError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        if call_in(ns, lambda: _try(probe_once, what)):
            return
        if time.monotonic() > deadline:
            proc.stop()
            raise LabError(f"{proc.name} not ready on {what} after {timeout}s:\n{proc.log_tail()}")
        time.sleep(0.02)


def _try(kind: str, what: str) -> bool:
    host, _, port = what.rpartition(":")
    try:
        if kind == "tcp":
            with socket.create_connection((host, int(port)), timeout=0.5):
                return True
        # a DNS query for the root NS; any reply at all means dnsmasq is serving
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            sock.sendto(
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01",
                (host, int(port)),
            )
            return sock.recv(512)[:2] == b"\x12\x34"
    except OSError:
        return False


def wait_ready(
    proc: Process, ns: str, tcp: Iterable[str] = (), udp: Iterable[str] = (), timeout: float = 10
) -> Process:
    for endpoint in tcp:
        _wait(proc, ns, "tcp", endpoint, timeout)
    for endpoint in udp:
        _wait(proc, ns, "udp", endpoint, timeout)
    return proc


def start_dnsmasq(
    ns: str, name: str, listen: str, directory: Path, records: Sequence[str]
) -> Process:
    """A real dnsmasq bound to one address; ``records`` are extra ``--option`` strings."""
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        f"--pid-file={directory / (name + '.pid')}",
        f"--listen-address={listen}",
        "--bind-interfaces",
        "--user=root",
        "--group=root",
        "--cache-size=0",  # scenario changes must take effect on the next query
        "--log-facility=-",
        "--log-queries",
        *records,
    ]
    return wait_ready(spawn(ns, name, argv, directory), ns, udp=[f"{listen}:53"])


def write_sites(directory: Path, names: Iterable[str]) -> Path:
    """Document roots: x.com's page is ~512 KiB (throttling is measurable), the rest small."""
    root = directory / "www"
    rng = random.Random(0x5EED)  # deterministic filler text
    words = ["what", "is", "happening", "now", "post", "reply", "repost", "like", "timeline"]
    for name in names:
        site = root / name
        site.mkdir(parents=True, exist_ok=True)
        title = TITLES.get(name, f"{name} - reachprobe lab")
        body = f"<p>{name} served by the reachprobe lab</p>\n"
        if name == "x.com":
            filler: list[str] = []
            size = 0
            while size < BIG_BODY_BYTES:
                line = " ".join(rng.choice(words) for _ in range(16)) + "\n"
                filler.append(line)
                size += len(line)
            body += "<pre>\n" + "".join(filler) + "</pre>\n"
        head = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
        page = f"{head}<body>\n{body}</body></html>\n"
        (site / "index.html").write_text(page)
    return root


def _nginx_common(directory: Path, name: str, workers: int) -> str:
    tmp = directory / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    temps = "\n".join(
        f"    {kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
user root;
daemon off;
worker_processes {workers};
pid {directory / (name + ".pid")};
error_log {directory / (name + ".error.log")} warn;
events {{ worker_connections 1024; }}
http {{
    access_log {directory / (name + ".access.log")};
{temps}
    default_type text/html;
    types {{ text/html html; }}
    keepalive_timeout 5;
"""


def internet_nginx_conf(
    directory: Path,
    sites: Path,
    redirecting: Iterable[str],
    plain: Iterable[str],
    down: Iterable[str],
    cert: KeyPair,
    catch_all: tuple[Sequence[str], Path] | None = None,
) -> Path:
    """The real sites: ``redirecting`` names send http:// to https:// (as X does),
    ``plain`` names serve both schemes, ``down`` names answer 503 on both.

    ``catch_all`` (addresses, certificate directory): any Host on those addresses gets
    a small page naming the host, on both schemes, and TLS presents
    ``<directory>/<SNI>.crt``, so every domain of a test list is a working site."""
    down_set = set(down)
    blocks: list[str] = []
    for site in [*redirecting, *plain]:
        if site in down_set:
            http = https = "location / { return 503; }"
        else:
            https = f"root {sites / site}; index index.html;"
            http = "return 301 https://$host$request_uri;" if site in set(redirecting) else https
        blocks.append(f"    server {{ listen 80; server_name {site}; {http} }}")
        blocks.append(
            f"    server {{ listen 443 ssl; server_name {site}; ssl_certificate {cert.cert_chain};"
            f" ssl_certificate_key {cert.key}; {https} }}"
        )
    default = (
        f"    server {{ listen 80 default_server; return 404; }}\n"
        f"    server {{ listen 443 ssl default_server; ssl_certificate {cert.cert_chain};"
        f" ssl_certificate_key {cert.key}; return 404; }}"
    )
    if catch_all is not None:
        addresses, certs = catch_all
        listens = " ".join(f"listen {a}:80; listen {a}:443 ssl;" for a in addresses)
        page = (
            "<!DOCTYPE html>\\n<html><head><title>$host - reachprobe lab</title></head>\\n"
            "<body><p>$host served by the reachprobe lab catch-all</p></body></html>\\n"
        )
        blocks.append(
            f"    server {{ {listens} ssl_certificate {certs}/$ssl_server_name.crt;"
            f" ssl_certificate_key {certs}/$ssl_server_name.key;"
            f' location / {{ return 200 "{page}"; }} }}'
        )
    conf = (
        _nginx_common(directory, "internet-nginx", 2) + "\n".join(blocks) + "\n" + default + "\n}\n"
    )
    path = directory / "internet-nginx.conf"
    path.write_text(conf)
    return path


def blockpage_body() -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head><title>Site Blocked</title></head>\n<body>\n"
        f"<!-- {BLOCKPAGE_MARKER} -->\n<h1>Surf Safely!</h1>\n<p>{BLOCKPAGE_TEXT}.</p>\n"
        "</body></html>\n"
    ).encode()


def blockpage_nginx_conf(directory: Path, listen: str) -> Path:
    page = directory / "blockpage.html"
    page.write_bytes(blockpage_body())
    conf = _nginx_common(directory, "blockpage-nginx", 1) + (
        f"    server {{ listen {listen}:80 default_server;\n"
        f"        location / {{ root {directory}; try_files /blockpage.html =404; }} }}\n}}\n"
    )
    path = directory / "blockpage-nginx.conf"
    path.write_text(conf)
    return path


def start_nginx(ns: str, name: str, conf: Path, directory: Path, ready: Sequence[str]) -> Process:
    argv = [
        "nginx",
        "-p",
        str(directory),
        "-c",
        str(conf),
        "-e",
        str(directory / f"{name}.error.log"),
    ]
    return wait_ready(spawn(ns, name, argv, directory), ns, tcp=ready)


def start_middlebox(
    ns: str,
    directory: Path,
    args: Sequence[str],
    ready_tcp: Sequence[str] = (),
    ready_udp: Sequence[str] = (),
) -> Process:
    argv = [sys.executable, "-m", "tests.lab.middlebox", *args]
    return wait_ready(spawn(ns, "middlebox", argv, directory), ns, tcp=ready_tcp, udp=ready_udp)


def wait_logged(proc: Process, text: str, offset: int = 0, timeout: float = 10) -> Process:
    """For a process with no port to probe (a sniffer): ready once its log, from byte
    ``offset`` on (the log is appended to across restarts), says ``text``."""
    deadline = time.monotonic() + timeout
    while text.encode() not in proc.log.read_bytes()[offset:]:
        if not proc.alive():
            raise LabError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            proc.stop()
            raise LabError(f"{proc.name} not ready after {timeout}s:\n{proc.log_tail()}")
        time.sleep(0.02)
    return proc


def start_watcher(
    ns: str, name: str, module: str, args: Sequence[str], ready: str, directory: Path
) -> Process:
    """A lab module with no port of its own (a sniffer, a queue), run as ``python -m``."""
    log = directory / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = spawn(ns, name, [sys.executable, "-m", module, *args], directory)
    return wait_logged(proc, ready, offset)


def host_records(hosts: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"--host-record={name},{address}" for name, addrs in hosts.items() for address in addrs]
