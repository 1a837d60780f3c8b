"""deploy/reachprobe.service: the kernel-level address filter agrees with the dial policy,
and the service's throw-away user gets a config it can read.

systemd is not available in tests, so the unit is read as text: the denied
ranges must cover the addresses the issue saw reached (loopback, unspecified,
the metadata service, in IPv4 and IPv6), everything denied must be refused
by :func:`probe.netaddr.is_dialable` too, and only the resolver stub is
allowed back by default.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from probe import netaddr

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "reachprobe.service"
# systemd's symbolic names (systemd.resource-control(5), IPAddressAllow=).
SYMBOLS = {
    "localhost": ("127.0.0.0/8", "::1/128"),
    "link-local": ("169.254.0.0/16", "fe80::/64"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
}


def setting(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    words = [
        word
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{name}=")
        for word in line.split("=", 1)[1].split()
    ]
    cidrs = [c for word in words for c in SYMBOLS.get(word, (word,))]
    return [ipaddress.ip_network(c) for c in cidrs]


def covered(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in networks)


def test_unit_denies_the_local_machine_and_metadata() -> None:
    denied = setting("IPAddressDeny")
    for address in ("127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "169.254.169.254", "fe80::1"):
        assert covered(address, denied), address
    for network in denied:  # the kernel never refuses what the probe would dial
        assert not netaddr.is_dialable(str(network.network_address))
        assert not netaddr.is_dialable(str(network.broadcast_address))


def test_unit_allows_back_only_the_resolver_stub() -> None:
    allowed = setting("IPAddressAllow")
    assert [str(n) for n in allowed] == ["127.0.0.53/32"]
    assert not covered("127.0.0.1", allowed)


def test_unit_reads_its_config_through_a_credential(tmp_path: Path) -> None:
    """`probe init` writes the config 0600 for root; under DynamicUser= the
    service cannot open that file (ConfigurationDirectory= is not chowned), so
    `probe config check` failed with exit 2 and the unit never started. It gets
    systemd's private copy instead, in every command that names the config."""
    import subprocess
    import sys

    made = subprocess.run(
        [sys.executable, "-m", "probe", "init", str(tmp_path / "c.toml"), "--vantage", "pi"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "c.toml").stat().st_mode & 0o077 == 0  # what the unit must cope with
    lines = UNIT.read_text().splitlines()
    assert "LoadCredential=reachprobe.toml:/etc/reachprobe/reachprobe.toml" in lines
    commands = [line for line in lines if line.startswith(("ExecStart=", "ExecStartPre="))]
    assert len(commands) == 2
    for command in commands:
        assert command.endswith(" --config ${CREDENTIALS_DIRECTORY}/reachprobe.toml"), command
