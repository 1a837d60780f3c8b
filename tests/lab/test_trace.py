"""``probe trace`` in the lab, where the censor (the isp) is hop 2 of 4.

The real command runs inside the vantage namespace; each test asserts where it
puts the censor, the method, the reset/DNS fingerprints and the split
ClientHello result, against what the lab was built to be.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import ns_run
from tests.lab.scenarios import TARGET, applied
from tests.lab.topology import Lab

WAIT = 0.5  # per probe; the lab answers in milliseconds
RUN_BOUND_S = 20.0
CENSOR_HOP = 2
SERVER_HOP = 4


def trace_argv(lab: Lab, *extra: str, domain: str = TARGET) -> list[str]:
    return [
        "ip", "netns", "exec", lab.vantage, "python", "-m", "probe", "trace", domain,
        "--resolver", lab.net.isp_resolver,
        "--control-resolver", lab.net.internet_resolver,
        "--ca-bundle", str(lab.ca_pem),
        "--control-sni", "control.lab",
        "--wait", f"{WAIT:g}",
        "--max-ttl", "8",
        "--json",
        *(extra or ("--no-store",)),
    ]  # fmt: skip


def run_trace(
    lab: Lab, *extra: str, argv: Sequence[str] | None = None
) -> tuple[int, dict[str, Any], str]:
    import sys

    command = list(argv or trace_argv(lab, *extra))
    command[command.index("python")] = sys.executable
    start = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    wall = time.monotonic() - start
    context = f"exit {proc.returncode} after {wall:.1f}s\nstdout:\n{proc.stdout}\n"
    context += f"stderr:\n{proc.stderr[-3000:]}"
    assert wall <= RUN_BOUND_S, context
    assert "Traceback" not in proc.stderr, context
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, result, context


def assert_located(lab: Lab, result: dict[str, Any], method: str, context: str) -> None:
    assert result["schema"] == "probe.trace/1", context
    assert result["domain"] == TARGET, context
    assert result["interference"] == method, context
    assert result["censor_hop"] == CENSOR_HOP, context
    assert result["censor_address"] == lab.net.isp_lan, context
    assert result["trigger_ttl"] == CENSOR_HOP + 1, context
    hops = [h["address"] for h in result["hops"]]
    assert hops == [*lab.net.routers, result["address"]], context
    assert result["address"] in lab.addresses(TARGET), context


def assert_injected(result: dict[str, Any], kind: str, context: str) -> None:
    fp = result["fingerprints"]
    assert fp is not None and fp["kind"] == kind, context
    assert fp["injected"] is True and fp["agrees_with_ttl_method"] is True, context
    assert fp["suspect"]["hop"] == CENSOR_HOP, context
    assert fp["reference"]["hop"] == SERVER_HOP, context


@pytest.mark.parametrize(
    ("scenario", "method", "fingerprint"),
    [
        ("sni_reset", "tls.reset", "reset"),
        ("sni_drop", "tls.timeout", None),
        ("host_reset", "http.reset", "reset"),
        ("dns_injection", "dns.injection", "dns-reply"),
    ],
)
def test_trace_locates_the_censor(
    clean_lab: Lab, scenario: str, method: str, fingerprint: str | None
) -> None:
    with applied(clean_lab, scenario):
        status, result, context = run_trace(clean_lab)
    assert status == 1, context
    assert_located(clean_lab, result, method, context)
    if fingerprint is None:
        assert result["fingerprints"] is None, context
    else:
        assert_injected(result, fingerprint, context)
    if method.startswith("tls."):  # a per-packet string match does not reassemble
        assert result["split"] == {
            "segments": "passed", "records": "passed", "reassembles": False
        }, context  # fmt: skip


def test_a_reassembling_censor_is_told_from_a_per_packet_one(clean_lab: Lab) -> None:
    """sni_reset (string match per packet) lets the split ClientHello pass (asserted
    above); the NFQUEUE censor that reassembles the stream resets it, both ways."""
    with applied(clean_lab, "sni_reset_reassembled"):
        status, result, context = run_trace(clean_lab)
    assert status == 1, context
    assert_located(clean_lab, result, "tls.reset", context)
    assert_injected(result, "reset", context)
    assert result["split"] == {
        "segments": "blocked", "records": "blocked", "reassembles": True
    }, context  # fmt: skip


def test_trace_is_stored_exported_and_relocated(clean_lab: Lab, tmp_path: Path) -> None:
    """Stored like a check: one row per trace, exported whole, re-located alike."""
    import sys

    db = str(tmp_path / "probe.db")
    with applied(clean_lab, "sni_reset"):
        status, printed, context = run_trace(clean_lab, "--db", db, "--vantage", "lab")
    assert status == 1, context

    def probe(*args: str) -> str:
        argv = [sys.executable, "-m", "probe", "traces", "--db", db, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return proc.stdout

    lines = [json.loads(line) for line in probe("--jsonl").splitlines()]
    assert len(lines) == 1, lines  # stored once
    stored = lines[0]
    assert stored["schema"] == "probe.trace.stored/1" and stored["vantage"] == "lab"
    assert (stored["interference"], stored["censor_hop"]) == ("tls.reset", CENSOR_HOP)
    assert stored["censor_address"] == printed["censor_address"]
    assert stored["observation"]["domain"] == TARGET
    assert len(stored["observation"]["path"]) == len(printed["hops"])
    assert probe("--relocate").strip() == "examined 1 trace(s); 0 location(s) changed"
    assert "tls.reset" in probe() and f"hop {CENSOR_HOP}" in probe()


def test_clean_lab_reports_nothing(clean_lab: Lab) -> None:
    status, result, context = run_trace(clean_lab)
    assert status == 0, context
    assert result["interference"] is None and result["censor_hop"] is None, context
    assert result["censor_address"] is None and result["fingerprints"] is None, context
    assert result["split"] is None, context
    assert [h["address"] for h in result["hops"]] == [*clean_lab.net.routers, result["address"]]
    assert result["hops"][-1]["outcome"] == "reply", context
    assert result["evidence"].startswith("No interference"), context


def test_no_address_from_the_resolver_is_not_traced(clean_lab: Lab) -> None:
    """dns_nxdomain: the ISP's resolver denies x.com. Nothing can be sent to the
    site, so no claim: "not traced", exit 3 (it said "no interference", exit 0)."""
    argv = trace_argv(clean_lab)
    del argv[argv.index("--control-resolver") : argv.index("--control-resolver") + 2]
    with applied(clean_lab, "dns_nxdomain"):
        status, result, context = run_trace(clean_lab, argv=argv)
    assert status == 3, context
    assert result["interference"] is None and result["address"] is None, context
    assert result["hops"] == [] and result["censor_hop"] is None, context
    assert result["evidence"].startswith("Not traced: "), context
    assert result["errors"] == [f"x.com: no A record from {clean_lab.net.isp_resolver}:53"]


@pytest.fixture
def server_resets(clean_lab: Lab) -> Iterator[Lab]:
    """The server itself (the internet namespace) resets ClientHellos naming x.com."""
    rule = [
        "INPUT", "-p", "tcp", "--dport", "443", "-m", "string", "--algo", "bm",
        "--hex-string", f"|00{len(TARGET):04x}|{TARGET}",
        "-j", "REJECT", "--reject-with", "tcp-reset",
    ]  # fmt: skip
    ns_run(clean_lab.internet, "iptables", "-w", "-I", *rule)
    try:
        yield clean_lab
    finally:
        ns_run(clean_lab.internet, "iptables", "-w", "-D", *rule)


@pytest.fixture
def transit_resets(clean_lab: Lab) -> Iterator[Lab]:
    """A censor in the transit router (hop 3), right before the servers (hop 4)."""
    rule = [
        "FORWARD", "-i", "to-isp", "-p", "tcp", "--dport", "443", "-m", "string", "--algo", "bm",
        "--hex-string", f"|00{len(TARGET):04x}|{TARGET}",
        "-j", "REJECT", "--reject-with", "tcp-reset",
    ]  # fmt: skip
    ns_run(clean_lab.transit, "iptables", "-w", "-I", *rule)
    try:
        yield clean_lab
    finally:
        ns_run(clean_lab.transit, "iptables", "-w", "-D", *rule)


def test_reset_ttl_locates_a_censor_right_before_the_server(transit_resets: Lab) -> None:
    """The first triggering TTL is the server's own hop, where TTLs alone cannot tell the
    server from a box before it; the reset's IP TTL (62: hop 3, the SYN-ACK's 61: hop 4)
    names the box."""
    status, result, context = run_trace(transit_resets)
    assert status == 1 and result["interference"] == "tls.reset", context
    assert result["trigger_ttl"] == SERVER_HOP == result["server_hop"], context
    fp = result["fingerprints"]
    assert fp["injected"] is True and fp["suspect"]["hop"] == SERVER_HOP - 1, context
    assert result["censor_hop"] == SERVER_HOP - 1, context
    assert result["censor_address"] == transit_resets.net.transit_lan, context


def test_genuine_reset_is_told_from_an_injected_one(server_resets: Lab) -> None:
    """Same method as sni_reset seen from the vantage, but the reset comes from the
    server's distance: genuine, so no censor hop is named."""
    status, result, context = run_trace(server_resets)
    assert status == 1, context  # the vantage still meets a reset
    assert result["interference"] == "tls.reset", context
    fp = result["fingerprints"]
    assert fp["kind"] == "reset" and fp["injected"] is False, context
    assert fp["suspect"]["hop"] == fp["reference"]["hop"] == SERVER_HOP, context
    assert result["censor_hop"] is None and result["trigger_ttl"] == SERVER_HOP, context
    assert "genuine" in result["evidence"], context


def test_thirty_silent_hops_are_bounded(clean_lab: Lab) -> None:
    """Past the isp nothing answers (everything to x.com is dropped there): 38 silent
    hops cost a few waits (the path goes 8 TTLs at a time), not one each, and little
    memory; the trace names no censor for what the control suffers too."""
    import resource

    argv = [*trace_argv(clean_lab), "--max-ttl", "40"]
    with applied(clean_lab, "tcp_blackhole"):
        status, result, context = run_trace(clean_lab, argv=argv)
    assert status == 0 and result["interference"] is None, context
    hops = result["hops"]
    assert [h["ttl"] for h in hops] == list(range(1, 41)), context
    assert [h["address"] for h in hops[:2]] == list(clean_lab.net.routers[:2]), context
    assert all(h["outcome"] == "silence" and h["address"] is None for h in hops[2:]), context
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert rss_mib < 300, f"{rss_mib:.0f} MiB"


def _ephemeral_ports() -> range:
    """The calling thread's namespace's ephemeral port range (where connect() picks)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(n) for n in f.read().split())
    return range(low, high + 1)


def test_forged_and_malformed_replies_do_not_mislead(clean_lab: Lab) -> None:
    """While the trace runs, the access router floods the vantage with spoofed ICMP
    time exceeded (quoting other ports, truncated, empty) and resets from the server's
    address to other ports: none matches a probe, so the result is unchanged."""
    import random
    import socket
    import threading

    from scapy.layers.inet import ICMP, IP, TCP

    from tests.lab.netns import call_in

    net = clean_lab.net
    server = clean_lab.addresses(TARGET)[0]
    rng = random.Random(15)
    # Forged packets name ports the trace cannot be using: a port from the vantage's
    # ephemeral range could be a live probe's, and a reset to it would be a real hit.
    ephemeral = call_in(clean_lab.vantage, _ephemeral_ports)
    spare = [p for p in range(1024, 65536) if p not in ephemeral]
    forged: list[bytes] = []
    for _ in range(100):
        port = rng.choice(spare)
        quote = bytes(IP(src=net.vantage, dst=server) / TCP(sport=port, dport=443))
        forged += [
            bytes(
                IP(src=net.gateway, dst=net.vantage)
                / ICMP(type=11)
                / quote[: rng.choice((0, 8, 24, 28))]
            ),
            bytes(IP(src=server, dst=net.vantage, ttl=61) / TCP(sport=443, dport=port, flags="R")),
            bytes(IP(src=server, dst=net.vantage) / ICMP(type=3, code=3) / quote[:28]),
        ]
    stop = threading.Event()

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            while not stop.is_set():
                for packet in forged:
                    sock.sendto(packet, (net.vantage, 0))
                stop.wait(0.01)

    thread = threading.Thread(target=call_in, args=(clean_lab.access, flood), daemon=True)
    with applied(clean_lab, "sni_reset"):
        thread.start()
        try:
            status, result, context = run_trace(clean_lab)
        finally:
            stop.set()
            thread.join(10)
    assert status == 1, context
    assert_located(clean_lab, result, "tls.reset", context)
    assert_injected(result, "reset", context)
