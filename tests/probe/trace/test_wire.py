"""Hostile packets: anything on a raw socket is garbage until it matches our flow."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("scapy")

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror

from probe.trace.probes import judge, kind_of
from probe.trace.wire import MAX_PAYLOAD, Flow, dissect, flow_of

ME, SERVER, ROUTER = "10.9.1.2", "10.9.129.10", "10.9.4.1"
FLOW = Flow(6, ME, 40000, SERVER, 443)


def time_exceeded(quoted: bytes, src: str = ROUTER) -> bytes:
    return bytes(IP(src=src, dst=ME, ttl=63) / ICMP(type=11, code=0) / quoted)


def test_time_exceeded_quoting_our_segment_matches() -> None:
    quote = bytes(IP(src=ME, dst=SERVER, ttl=1) / TCP(sport=40000, dport=443, flags="PA"))[:28]
    got = dissect(time_exceeded(quote))
    assert got is not None and got.quotes(FLOW) and got.src == ROUTER
    assert kind_of(got) == "time-exceeded"


@pytest.mark.parametrize(
    "quote",
    [
        b"",  # absent
        b"\x45" + b"\0" * 10,  # truncated IP header
        bytes(IP(src=ME, dst=SERVER) / TCP(sport=40000, dport=443))[:22],  # ports cut off
        bytes(IP(src=ME, dst=SERVER) / TCP(sport=40001, dport=443))[:28],  # another flow
        bytes(IP(src="10.9.9.9", dst=SERVER) / TCP(sport=40000, dport=443))[:28],  # spoofed src
        bytes(IP(src=ME, dst=SERVER) / UDP(sport=40000, dport=443))[:28],  # another protocol
        b"\x65" + b"\xff" * 40,  # not IPv4
    ],
)
def test_malformed_or_foreign_quotes_never_match(quote: bytes) -> None:
    got = dissect(time_exceeded(quote))
    assert got is None or not got.quotes(FLOW)


def test_reset_fields_are_read() -> None:
    raw = bytes(
        IP(src=SERVER, dst=ME, ttl=63, id=0) / TCP(sport=443, dport=40000, flags="RA", window=0)
    )
    got = dissect(raw)
    assert got is not None and got.answers(FLOW) and kind_of(got) == "reset"
    packet = got.packet("reset", 1.0)
    assert (packet.ip_ttl, packet.ip_id, packet.tcp_flags, packet.tcp_window) == (63, 0, "RA", 0)


def test_spoofed_reset_for_another_port_does_not_answer_our_flow() -> None:
    raw = bytes(IP(src=SERVER, dst=ME) / TCP(sport=443, dport=40001, flags="R"))
    got = dissect(raw)
    assert got is not None and not got.answers(FLOW)


def test_garbage_never_raises_and_payload_is_bounded() -> None:
    rng = random.Random(15)
    for size in (0, 1, 19, 20, 21, 40, 60, 1500):
        for _ in range(200):
            dissect(bytes(rng.getrandbits(8) for _ in range(size)))
    for proto in (1, 6, 17):  # valid IPv4 header, garbage transport
        for _ in range(200):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
            dissect(bytes(IP(src=SERVER, dst=ME, proto=proto)) + body)
    big = dissect(bytes(IP(src=SERVER, dst=ME) / UDP(sport=53, dport=40000) / (b"x" * 60000)))
    assert big is not None and len(big.payload) == MAX_PAYLOAD


def test_fragments_are_ignored() -> None:
    raw = bytes(IP(src=SERVER, dst=ME, flags="MF") / TCP(sport=443, dport=40000, flags="R"))
    assert dissect(raw) is None


def test_scapy_error_layers_are_not_needed() -> None:
    """scapy dissects ICMP quotes as IPerror/TCPerror; we read the bytes ourselves, so a
    quote scapy cannot parse still matches when it is ours."""
    quote = bytes(IPerror(src=ME, dst=SERVER) / TCPerror(sport=40000, dport=443))[:28]
    got = dissect(time_exceeded(quote))
    assert got is not None and got.quotes(FLOW)


def test_judge_prefers_a_reset_over_the_router() -> None:
    assert judge([("time-exceeded", ROUTER), ("reset", SERVER)]) == ("reset", SERVER)
    assert judge([("time-exceeded", ROUTER)]) == ("time-exceeded", ROUTER)
    assert judge([("other", SERVER)]) == ("silence", None)
    assert judge([]) == ("silence", None)


def test_flow_of_reads_the_flow_without_scapy() -> None:
    """The sniffer's cheap filter agrees with the full dissection."""
    reply = bytes(IP(src=SERVER, dst=ME) / TCP(sport=443, dport=40000, flags="SA"))
    quote = bytes(IP(src=ME, dst=SERVER) / TCP(sport=40000, dport=443))[:28]
    assert flow_of(reply) == FLOW
    assert flow_of(time_exceeded(quote)) == FLOW
    assert flow_of(time_exceeded(b"")) is None
    assert flow_of(bytes(IP(src=SERVER, dst=ME) / ICMP(type=0))) is None  # echo reply
    assert flow_of(b"\x45\x00") is None


def test_an_ack_of_part_of_the_payload_decides_nothing() -> None:
    """The server ACKs the first half of a split ClientHello before a reassembling
    censor resets the second: that ACK must not end the wait as a reply."""
    isn, total = 1000, 300
    end = isn + 1 + total

    def ack(n: int) -> str:
        raw = bytes(IP(src=SERVER, dst=ME) / TCP(sport=443, dport=40000, flags="A", ack=n))
        got = dissect(raw)
        assert got is not None
        return kind_of(got, end)

    assert ack(isn + 1) == "other"  # nothing of ours yet
    assert ack(isn + 151) == "other"  # the first segment only
    assert ack(end) == "ack"
    end_wrapped = (2**32 - 10 + total) % 2**32  # sequence numbers wrap
    raw = bytes(IP(src=SERVER, dst=ME) / TCP(sport=443, dport=40000, flags="A", ack=end_wrapped))
    got = dissect(raw)
    assert got is not None and kind_of(got, end_wrapped) == "ack"
