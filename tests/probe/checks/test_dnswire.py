"""The fast DNS query builder and reply reader agree with dnspython or decline,
on hostile input too."""

from __future__ import annotations

import random

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from probe.checks import dns as dns_module
from probe.checks import dnswire
from probe.checks.dns import Asked, _answer
from tests.probe.checks.mutants import mutated

NAMES = ("x.com", "www.Example.test", "a-b_c.d.e.f.test")
TARGETS = ("edge.x.com.", "CDN.example.test.", "x.com.", "a.b.test.")
V6 = ("2001:db8::1", "::ffff:192.0.2.1", "::1.2.3.4", "2001:db8:0:0:1::")  # canonical text varies
RCODES = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED)


def slow(asked: Asked, wire: bytes) -> tuple[bool, str, tuple[object, ...]] | None:
    """What dnspython makes of ``wire`` (the path every declined packet takes)."""
    message = asked.reply(wire)
    if message is None:
        return None
    return bool(message.flags & dns.flags.TC), *_answer(message)


def fast(asked: Asked, wire: bytes) -> tuple[str, tuple[object, ...]] | None:
    return dnswire.read_reply(wire, asked.id, asked.question.labels, asked.question.rdtype)


def reply(rng: random.Random, asked: Asked, qname: str) -> bytes:
    """A reply to ``asked`` of the shapes resolvers send, and some they should not."""
    query = dns.message.from_wire(asked.wire)
    response = dns.message.make_response(query)
    if rng.random() < 0.2:
        response.set_rcode(rng.choice(RCODES))
    owner = qname + "."
    for _ in range(rng.randrange(0, 3)):  # a CNAME chain, owners in any case
        target = rng.choice(TARGETS)
        cased = "".join(c.upper() if rng.random() < 0.3 else c for c in owner)
        ttl = rng.choice((0, 60, 300, 2**31 + 5))
        response.answer.append(dns.rrset.from_text(cased, ttl, "IN", "CNAME", target))
        if rng.random() < 0.2:  # a second CNAME for the owner: the last one counts
            target = rng.choice(TARGETS)
            response.answer.append(dns.rrset.from_text(owner, 30, "IN", "CNAME", target))
        owner = target
    for _ in range(rng.randrange(0, 4)):
        rtype = rng.choice(("A", "A", "AAAA", "CNAME"))
        value = {
            "A": f"192.0.2.{rng.randrange(4)}",
            "AAAA": rng.choice(V6),
            "CNAME": rng.choice(TARGETS),
        }[rtype]
        ttl = rng.choice((30, 300, 2**32 - 1))
        rrset = dns.rrset.from_text(owner, ttl, "IN", rtype, value)
        response.answer.append(rrset)  # separate rrsets of one owner: merged on reading
    if rng.random() < 0.3:
        response.authority.append(
            dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. host.test. 1 2 3 4 5")
        )
    if rng.random() < 0.1:
        response.additional.append(dns.rrset.from_text(owner, 60, "IN", "A", "192.0.2.9"))
    if rng.random() < 0.2:
        response.flags |= dns.flags.TC
    if rng.random() < 0.5:
        unknown = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"x")
        options: list[dns.edns.Option] = [unknown] if rng.random() < 0.2 else []
        response.use_edns(0, options=options)
        if rng.random() < 0.1:
            response.set_rcode(dns.rcode.BADVERS)
    return response.to_wire()


def pointers(rng: random.Random, data: bytearray, at: int) -> None:
    """A compression pointer or a label length where anything was."""
    kind = rng.randrange(3)
    if kind == 0 and len(data) > at + 1:  # a compression pointer anywhere
        data[at : at + 2] = bytes((0xC0 | rng.randrange(4), rng.randrange(256)))
    elif kind == 1:
        data[at] = rng.choice((0, 63, 64, 191, 192, 255))
    elif len(data) > at + 1:  # a pointer into the message, either way
        target = rng.randrange(len(data))
        data[at : at + 2] = bytes((0xC0 | target >> 8, target & 0xFF))


@pytest.mark.parametrize("seed", range(4))
def test_fast_reader_agrees_with_dnspython_or_declines(seed: int) -> None:
    rng = random.Random(seed)
    read = [0, 0]  # replies as generated, mutated ones
    declined = 0
    for _ in range(150):
        qname = rng.choice(NAMES)
        asked = Asked.new(qname, rng.choice(("A", "AAAA")))
        wire = reply(rng, asked, qname)
        for candidate in (wire, *(mutated(rng, wire, pointers) for _ in range(25))):
            got = fast(asked, candidate)
            if got is None:
                declined += 1
                continue
            read[candidate is not wire] += 1
            assert slow(asked, candidate) == (False, *got), candidate.hex()
    # Both paths are exercised: the common shape (and mutants that keep it) is
    # read here, the rest declined.
    assert read[0] > 50 and read[1] > 50 and declined > 1000, (read, declined)


def test_a_reply_to_another_query_is_declined() -> None:
    asked = Asked.new("x.com", "A")
    other = Asked.new("x.com", "A")
    query = dns.message.from_wire(other.wire)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("x.com.", 60, "IN", "A", "192.0.2.1"))
    wire = response.to_wire()
    if other.id != asked.id:
        assert fast(asked, wire) is None and slow(asked, wire) is None
    assert fast(other, wire) == ("NOERROR", slow(other, wire)[2])  # type: ignore[index]


# ------------------------------------------------------------------ queries

PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
ODD = ("\\", "\\065", "\\.", " ", "*", "@", "é", "ß", "xn--", "\x00", "\x7f", '"', "(")
QTYPES = ("A", "AAAA", "CNAME", "a", "Aaaa", "MX", "TYPE1", "HTTPS", "BOGUS", "")


def name(rng: random.Random) -> str:
    """Plain names of every length up to dnspython's limits and past them, and odd ones."""
    if rng.random() < 0.05:
        return rng.choice(("", ".", "@", "..", ".x.com", "x..com", "x.com.."))
    size = rng.choice((1, 2, 3, 8, 63, 64)) if rng.random() < 0.3 else rng.randrange(1, 20)
    count = rng.choice((1, 2, 3, 4)) if rng.random() < 0.8 else rng.randrange(4, 130)
    labels = ["".join(rng.choice(PLAIN) for _ in range(size)) for _ in range(count)]
    if rng.random() < 0.2:
        at = rng.randrange(len(labels))
        labels[at] = labels[at][: rng.randrange(len(labels[at]) + 1)] + rng.choice(ODD)
    return ".".join(labels) + ("." if rng.random() < 0.3 else "")


def dnspython_query(qname: str, qtype: str) -> tuple[bytes, tuple[bytes, ...], int] | type:
    """What dnspython builds (id 0), or the exception it raises."""
    try:
        message = dns.message.make_query(qname, qtype, use_edns=0)
    except Exception as exc:
        return type(exc)
    message.id = 0
    asked = message.question[0]
    labels = tuple(label.lower() for label in asked.name.labels if label)
    return message.to_wire(), labels, int(asked.rdtype)


def test_query_builder_matches_dnspython_or_declines() -> None:
    rng = random.Random(16)
    built = declined = 0
    for _ in range(1200):
        qname = name(rng)
        qtype = rng.choice(("A", "AAAA")) if rng.random() < 0.6 else rng.choice(QTYPES)
        expected = dnspython_query(qname, qtype)
        got = dnswire.make_query(qname, qtype)
        if got is None:
            declined += 1
        else:
            built += 1
            assert got == expected, (qname, qtype)
        # Whoever builds it, the query sent is dnspython's (or its error).
        dns_module._question.cache_clear()
        if isinstance(expected, type):
            with pytest.raises(expected):
                dns_module._question(qname, qtype)
        else:
            question = dns_module._question(qname, qtype)
            assert (question.wire, question.labels, question.rdtype) == expected, qname
    assert built > 400 and declined > 300, (built, declined)


def test_each_query_gets_the_cached_question_with_its_own_id() -> None:
    first, second = Asked.new("x.com", "A"), Asked.new("x.com", "A", qid=0)
    assert first.question is second.question
    assert second.wire == first.question.wire and second.id == 0
    assert dns.message.from_wire(first.wire).id == first.id
    assert first.wire[2:] == second.wire[2:]
