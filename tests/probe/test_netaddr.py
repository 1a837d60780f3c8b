"""The dial policy and bogon list over the whole IANA special-purpose registries.

Each row is one registry entry (IPv4: iana-ipv4-special-registry, IPv6:
iana-ipv6-special-registry, as of 2025) with an address inside it and what
the policy must say: ``never`` (refused even with allow_loopback), ``loopback``
(refused unless allow_loopback), ``dial`` (dialled by the probe; refused by
``public_only`` when it is a bogon).  Every IPv4 row is also checked through
each IPv6 form that carries it (mapped, compatible, SIIT, NAT64, 6to4).
"""

from __future__ import annotations

import ipaddress

import pytest

from probe import netaddr

# (registry entry, an address inside it, policy, bogon)
IPV4_REGISTRY = [
    ("0.0.0.0/8 this network", "0.1.2.3", "never", True),
    ("0.0.0.0/32 this host", "0.0.0.0", "never", True),
    ("10.0.0.0/8 private", "10.1.2.3", "dial", True),
    ("100.64.0.0/10 shared (CGN)", "100.64.1.1", "dial", True),
    ("127.0.0.0/8 loopback", "127.0.0.1", "loopback", True),
    ("127.0.0.0/8 loopback, not .1", "127.255.0.9", "loopback", True),
    ("169.254.0.0/16 link-local", "169.254.1.1", "never", True),
    ("169.254.169.254 cloud metadata", "169.254.169.254", "never", True),
    ("172.16.0.0/12 private", "172.31.255.1", "dial", True),
    ("192.0.0.0/24 IETF protocol assignments", "192.0.0.1", "dial", True),
    ("192.0.0.0/29 DS-Lite", "192.0.0.2", "dial", True),
    ("192.0.0.8/32 IPv4 dummy", "192.0.0.8", "dial", True),
    ("192.0.0.170/32 NAT64 discovery", "192.0.0.170", "dial", True),
    ("192.0.2.0/24 TEST-NET-1", "192.0.2.1", "dial", True),
    ("192.31.196.0/24 AS112-v4", "192.31.196.1", "dial", True),
    ("192.52.193.0/24 AMT", "192.52.193.1", "dial", True),
    ("192.88.99.0/24 6to4 relay anycast", "192.88.99.1", "dial", True),
    ("192.168.0.0/16 private", "192.168.1.1", "dial", True),
    ("192.175.48.0/24 direct delegation AS112", "192.175.48.1", "dial", True),
    ("198.18.0.0/15 benchmarking", "198.19.0.1", "dial", True),
    ("198.51.100.0/24 TEST-NET-2", "198.51.100.1", "dial", True),
    ("203.0.113.0/24 TEST-NET-3", "203.0.113.1", "dial", True),
    ("224.0.0.0/4 multicast", "224.0.0.1", "never", True),
    ("240.0.0.0/4 reserved", "240.0.0.1", "never", True),
    ("255.255.255.255/32 limited broadcast", "255.255.255.255", "never", True),
    ("a public address", "104.244.42.1", "dial", False),
]

IPV6_REGISTRY = [
    ("::1/128 loopback", "::1", "loopback", True),
    ("::/128 unspecified", "::", "never", True),
    ("::ffff:0:0/96 IPv4-mapped (public)", "::ffff:104.244.42.1", "dial", True),
    ("64:ff9b::/96 NAT64 well-known (public)", "64:ff9b::68f4:2a01", "dial", False),
    ("64:ff9b:1::/48 local-use NAT64 (/96 layout)", "64:ff9b:1::68f4:2a01", "dial", True),
    ("100::/64 discard-only", "100::1", "dial", True),
    ("100:0:0:1::/64 dummy prefix", "100:0:0:1::1", "dial", True),
    ("2001::/23 IETF protocol assignments", "2001:2::1", "dial", True),
    ("2001::/32 Teredo (public server and client)", "2001:0:68f4:2a01:0:0:97bb:d5fe", "dial", True),
    ("2001:db8::/32 documentation", "2001:db8::1", "dial", True),
    ("2002::/16 6to4 (public)", "2002:68f4:2a01::1", "dial", True),
    ("3fff::/20 documentation", "3fff::1", "dial", True),
    ("5f00::/16 SRv6 SIDs", "5f00::1", "dial", True),
    ("fc00::/7 unique local", "fd00::1", "dial", True),
    ("fe80::/10 link-local", "fe80::1", "never", True),
    ("fe80::/10 link-local with a zone", "fe80::1%eth0", "never", True),
    ("ff00::/8 multicast", "ff02::1", "never", True),
    ("a public address", "2606:1f80:f000::1", "dial", False),
]

REGISTRY = IPV4_REGISTRY + IPV6_REGISTRY


def assert_policy(address: str, policy: str, bogon: bool, entry: str) -> None:
    default = netaddr.is_dialable(address)
    loopback = netaddr.is_dialable(address, allow_loopback=True)
    public = netaddr.is_dialable(address, public_only=True)
    expected = {
        "never": (False, False, False),
        "loopback": (False, True, False),
        "dial": (True, True, not bogon),
    }[policy]
    assert (default, loopback, public) == expected, f"{entry}: {address}"
    assert netaddr.is_bogon(address) is bogon, f"{entry}: {address}"


ROW = ("entry", "address", "policy", "bogon")


@pytest.mark.parametrize(ROW, REGISTRY, ids=str)
def test_special_purpose_registry(entry: str, address: str, policy: str, bogon: bool) -> None:
    assert_policy(address, policy, bogon, entry)


def ipv6_forms(v4: str) -> dict[str, str]:
    """Every IPv6 literal that carries the IPv4 address ``v4``."""
    value = int(ipaddress.IPv4Address(v4))
    hi, lo = value >> 16, value & 0xFFFF
    return {
        "mapped": f"::ffff:{v4}",
        "mapped, hex": f"::ffff:{hi:x}:{lo:x}",
        "compatible": f"::{v4}",
        "SIIT translated": f"::ffff:0:{v4}",
        "NAT64 well-known": f"64:ff9b::{v4}",
        "NAT64 local /96": f"64:ff9b:1::{v4}",
        "6to4": f"2002:{hi:x}:{lo:x}::1",
    }


@pytest.mark.parametrize(ROW, IPV4_REGISTRY, ids=str)
def test_embedded_ipv4_is_judged_like_the_plain_form(
    entry: str, address: str, policy: str, bogon: bool
) -> None:
    for form, literal in ipv6_forms(address).items():
        if address == "0.0.0.0" and form == "compatible":
            continue  # "::" itself: the unspecified address, refused as such
        # Refused stays refused; dialled stays dialled, but is a bogon (an odd answer).
        carried_bogon = bogon or form not in ("NAT64 well-known",)
        assert_policy(literal, policy, carried_bogon, f"{entry} as {form}")


def test_poisoned_answers_of_the_issue_are_refused() -> None:
    for address in ("::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:169.254.169.254"):
        assert not netaddr.is_dialable(address)
    assert netaddr.is_dialable("::ffff:127.0.0.1", allow_loopback=True)


def test_teredo_client_is_unwrapped() -> None:
    # Teredo stores the client's address inverted: 0x80ffffff is 127.0.0.0.
    assert netaddr.embedded(netaddr.parse("2001:0:68f4:2a01:0:0:80ff:fffe"))[-1] == (  # type: ignore[arg-type]
        ipaddress.IPv4Address("127.0.0.1")
    )
    assert not netaddr.is_dialable("2001:0:68f4:2a01:0:0:80ff:fffe")


def test_local_nat64_without_a_fitting_layout_is_judged_on_every_layout() -> None:
    # Suffix bits set in every layout: undecidable, so every reading counts.
    assert not netaddr.is_dialable("64:ff9b:1:7f00:1:ff:ffff:ffff")


def test_non_addresses_are_refused() -> None:
    for text in ("x.com", "", "1.2.3", "::ffff:1.2.3.4.5", "::1/128"):
        assert not netaddr.is_dialable(text, allow_loopback=True)
        assert not netaddr.is_bogon(text)


def test_labels() -> None:
    assert netaddr.endpoint_label("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert netaddr.endpoint_label("1.2.3.4", 80) == "1.2.3.4:80"
