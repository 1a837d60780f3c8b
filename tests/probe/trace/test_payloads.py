"""The bytes a trace sends: a real ClientHello, and splits that cut the name."""

from __future__ import annotations

from probe.trace.payloads import client_hello, http_request, split_records, split_segments


def records(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        assert len(data) >= 5
        size = int.from_bytes(data[3:5], "big")
        out.append((data[0], data[5 : 5 + size]))
        assert len(data) >= 5 + size
        data = data[5 + size :]
    return out


def test_client_hello_carries_the_sni() -> None:
    hello = client_hello("x.com").data
    assert hello[0] == 0x16 and b"\x00\x05x.com" in hello


def test_segment_split_cuts_inside_the_name() -> None:
    hello = client_hello("x.com").data
    first, second = split_segments(hello, "x.com")
    assert first + second == hello
    assert b"x.com" not in first and b"x.com" not in second


def test_record_split_reframes_the_same_handshake() -> None:
    hello = client_hello("x.com").data
    split = split_records(hello, "x.com")
    parts = records(split)
    assert len(parts) == 2 and all(kind == 0x16 for kind, _ in parts)
    assert b"".join(body for _, body in parts) == records(hello)[0][1]
    assert b"x.com" not in split


def test_split_of_something_else_is_harmless() -> None:
    assert split_records(b"GET", "x.com") == b"GET"
    assert b"".join(split_segments(b"abcdef", "x.com")) == b"abcdef"


def test_http_request_names_the_host() -> None:
    assert b"\r\nHost: x.com\r\n" in http_request("x.com")
