from __future__ import annotations

import pytest

from probe import netaddr


@pytest.mark.parametrize(
    ("address", "default", "with_loopback"),
    [
        ("104.244.42.1", True, True),
        ("10.1.2.3", True, True),  # private: ISPs host blockpages there
        ("2606:1f80:f000::1", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("0.0.0.0", False, False),
        ("::", False, False),
        ("224.0.0.1", False, False),
        ("169.254.1.1", False, False),
        ("fe80::1", False, False),
        ("x.com", False, False),
    ],
)
def test_dial_policy(address: str, default: bool, with_loopback: bool) -> None:
    assert netaddr.is_dialable(address) is default
    assert netaddr.is_dialable(address, allow_loopback=True) is with_loopback


def test_bogons_and_labels() -> None:
    assert netaddr.is_bogon("10.0.0.1") and netaddr.is_bogon("127.0.0.1")
    assert not netaddr.is_bogon("104.244.42.1") and not netaddr.is_bogon("x.com")
    assert netaddr.endpoint_label("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert netaddr.endpoint_label("1.2.3.4", 80) == "1.2.3.4:80"
