"""Plain-DNS check against the loopback server of :mod:`dnsserver` (real UDP/TCP sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from probe.checks.dns import MAX_REPLIES, Resolver, parse_resolver, query, system_resolver
from probe.errors import UsageError
from probe.failures import Failure
from probe.observations import DNSQuery, DNSRecord
from tests.probe.checks import dnsserver as ds


def run(coro: Coroutine[Any, Any, DNSQuery]) -> DNSQuery:
    return asyncio.run(coro)


async def ask(
    server: ds.DNSServer,
    qname: str,
    qtype: str = "A",
    *,
    timeout: float = 2.0,
    window: float = 0.3,
) -> DNSQuery:
    resolver = parse_resolver(server.spec)
    return await query(
        resolver,
        qname,
        qtype,
        origin="vantage",
        timeout=timeout,
        t0=time.monotonic(),
        window=window,
    )


def check(
    behaviours: dict[str, ds.Behaviour],
    qname: str,
    qtype: str = "A",
    *,
    tcp: bool = True,
    **kwargs: float,
) -> tuple[DNSQuery, float, list[ds.SeenQuery]]:
    """Query a fresh server; return the observation, wall time, and what the server saw."""

    async def main() -> tuple[DNSQuery, float, list[ds.SeenQuery]]:
        async with ds.DNSServer(behaviours, tcp=tcp) as server:
            start = time.monotonic()
            result = await ask(server, qname, qtype, **kwargs)
            return result, time.monotonic() - start, server.queries

    return asyncio.run(main())


# ------------------------------------------------------------------ answers


def test_cname_chain_and_addresses() -> None:
    behaviour = ds.answer(
        "104.244.42.1", "104.244.42.65", "2606:1f80:f000::1", cnames=("Edge.Twitter.test.",), ttl=42
    )
    result, _, seen = check({"x.test": behaviour}, "X.Test")
    assert result.failure is None and result.ok
    assert result.resolver.startswith("udp://127.0.0.1:")
    assert result.origin == "vantage" and result.qname == "X.Test" and result.qtype == "A"
    assert len(result.replies) == 1
    assert result.replies[0].rcode == "NOERROR"
    records = result.replies[0].records
    assert records[0] == DNSRecord("CNAME", "x.test", "edge.twitter.test", 42)
    assert set(records[1:]) == {  # the server shuffles an RRset's records
        DNSRecord("A", "edge.twitter.test", "104.244.42.1", 42),
        DNSRecord("A", "edge.twitter.test", "104.244.42.65", 42),
    }
    assert len(records) == 3
    assert sorted(result.addresses) == ["104.244.42.1", "104.244.42.65"]
    assert result.replies[0].cnames == ("edge.twitter.test",)
    assert result.replies[0].source == result.resolver.removeprefix("udp://")
    assert 0 < result.elapsed_ms == result.replies[0].elapsed_ms < 1000
    assert seen == [ds.SeenQuery("udp", "x.test", "A")]


def test_aaaa() -> None:
    result, _, _ = check(
        {"x.test": ds.answer("104.244.42.1", "2606:1F80:F000::0001")}, "x.test", "AAAA"
    )
    assert result.failure is None
    assert result.addresses == ("2606:1f80:f000::1",)  # canonical text
    assert result.replies[0].records[0].rtype == "AAAA"


@pytest.mark.parametrize(
    ("behaviour", "failure"),
    [
        (ds.NXDOMAIN, Failure.DNS_NXDOMAIN),
        (ds.SERVFAIL, Failure.DNS_SERVFAIL),
        (ds.REFUSED, Failure.DNS_REFUSED),
        ((ds.Answer(rcode="NOTIMP"),), Failure.DNS_OTHER_RCODE),
        (ds.NO_ANSWER, Failure.DNS_NO_ANSWER),
        (ds.answer(cnames=("a.test", "b.test")), Failure.DNS_NO_ANSWER),  # chain to nowhere
        (ds.answer("2001:db8::1"), Failure.DNS_NO_ANSWER),  # only AAAA exists, A asked
    ],
)
def test_rcode_failures(behaviour: ds.Behaviour, failure: Failure) -> None:
    result, elapsed, _ = check({"x.test": behaviour}, "x.test")
    assert result.failure is failure
    assert len(result.replies) == 1  # the reply is still on record
    assert result.elapsed_ms == result.replies[0].elapsed_ms < 200  # not counting the window
    assert elapsed < 1.0  # failed on the reply, not on the timeout


def test_no_answer_keeps_cname_records() -> None:
    result, _, _ = check({"x.test": ds.answer(cnames=("a.test", "b.test"))}, "x.test")
    assert result.replies[0].cnames == ("a.test", "b.test")
    assert result.addresses == ()


# ----------------------------------------------------------- no or bad replies


def test_silent_server_times_out_within_bound() -> None:
    result, elapsed, _ = check({"x.test": ds.SILENT}, "x.test", timeout=0.5)
    assert result.failure is Failure.TIMEOUT
    assert result.replies == ()
    assert 0.45 < elapsed < 1.0
    assert 450 < result.elapsed_ms < 1000


def test_only_garbage_is_bad_reply() -> None:
    result, elapsed, _ = check({"x.test": (ds.Garbage(),)}, "x.test", timeout=0.5)
    assert result.failure is Failure.DNS_BAD_REPLY
    assert result.replies == ()
    assert elapsed < 1.0


def test_garbage_then_valid_reply() -> None:
    behaviour = (ds.Garbage(), ds.Answer(("198.51.100.7",), delay=0.05))
    result, _, _ = check({"x.test": behaviour}, "x.test", window=0.1)
    assert result.failure is None
    assert result.addresses == ("198.51.100.7",)
    assert len(result.replies) == 1
    assert result.elapsed_ms >= 40


def test_wrong_id_is_ignored() -> None:
    behaviour = (ds.WrongId(ds.Answer(("10.9.9.9",))), ds.Answer(("198.51.100.7",), delay=0.05))
    result, _, _ = check({"x.test": behaviour}, "x.test", window=0.1)
    assert result.failure is None
    assert [r.addresses for r in result.replies] == [("198.51.100.7",)]


def test_wrong_question_is_ignored() -> None:
    behaviour = (
        ds.WrongQuestion(ds.Answer(("10.9.9.9",))),
        ds.Answer(("198.51.100.7",), delay=0.05),
    )
    result, _, _ = check({"x.test": behaviour}, "x.test", window=0.1)
    assert [r.addresses for r in result.replies] == [("198.51.100.7",)]


def test_each_query_has_a_fresh_id() -> None:
    """The question's wire form is built once and reused: the id must not be."""

    async def main() -> list[ds.SeenQuery]:
        async with ds.DNSServer({"a.test": ds.answer("192.0.2.1")}) as server:
            for _ in range(3):
                assert (await ask(server, "a.test", window=0)).failure is None
            return server.queries

    ids = {seen.id for seen in asyncio.run(main())}
    assert len(ids) > 1  # three random 16-bit ids: equal by chance with p = 2**-32


def test_only_wrong_id_is_bad_reply() -> None:
    result, elapsed, _ = check({"x.test": (ds.WrongId(),)}, "x.test", timeout=0.4)
    assert result.failure is Failure.DNS_BAD_REPLY
    assert elapsed < 0.9


def test_closed_port_is_connection_refused() -> None:
    resolver = Resolver("udp", "127.0.0.1", ds.free_port())
    start = time.monotonic()
    result = run(query(resolver, "x.test", "A", origin="control", timeout=2.0, t0=start))
    assert result.failure is Failure.CONNECTION_REFUSED
    assert result.origin == "control"
    assert time.monotonic() - start < 1.0  # the ICMP error ends the wait


# ------------------------------------------------------------------ injection


def test_injected_reply_then_real_reply_both_recorded() -> None:
    behaviour = ds.injected(spoofed=["10.10.34.34"], real=["104.244.42.1"], gap=0.08)
    result, elapsed, _ = check({"x.test": behaviour}, "x.test", window=0.3)
    assert result.failure is None
    assert [r.addresses for r in result.replies] == [("10.10.34.34",), ("104.244.42.1",)]
    assert result.addresses == ("10.10.34.34",)  # what a stub resolver would use
    first, second = result.replies
    assert second.elapsed_ms - first.elapsed_ms >= 70
    assert result.elapsed_ms == first.elapsed_ms
    assert first.source == second.source
    assert 0.3 <= elapsed < 0.8  # listened for the window after the first reply


def test_reply_after_window_is_not_recorded() -> None:
    behaviour = ds.injected(spoofed=["10.10.34.34"], real=["104.244.42.1"], gap=0.4)
    result, elapsed, _ = check({"x.test": behaviour}, "x.test", window=0.1)
    assert [r.addresses for r in result.replies] == [("10.10.34.34",)]
    assert elapsed < 0.35


def test_window_never_extends_past_timeout() -> None:
    behaviour = ds.injected(spoofed=["10.10.34.34"], real=["104.244.42.1"], gap=2.0)
    result, elapsed, _ = check({"x.test": behaviour}, "x.test", timeout=0.4, window=5.0)
    assert len(result.replies) == 1
    assert 0.35 < elapsed < 0.9


def test_later_error_reply_does_not_change_failure() -> None:
    behaviour = (ds.Answer(("10.10.34.34",)), ds.Answer(rcode="NXDOMAIN", delay=0.05))
    result, _, _ = check({"x.test": behaviour}, "x.test", window=0.2)
    assert result.failure is None
    assert [r.rcode for r in result.replies] == ["NOERROR", "NXDOMAIN"]


# ------------------------------------------------------------------ truncation


def test_truncated_reply_is_retried_over_tcp() -> None:
    behaviour = (ds.Answer(("104.244.42.1",), cnames=("edge.test",), truncated=True),)
    result, _, seen = check({"x.test": behaviour}, "x.test", window=0.05)
    assert result.failure is None
    assert result.addresses == ("104.244.42.1",)
    assert len(result.replies) == 1
    assert result.replies[0].records[0] == DNSRecord("CNAME", "x.test", "edge.test", 300)
    assert [q.transport for q in seen] == ["udp", "tcp"]


def test_truncated_reply_with_tcp_closed() -> None:
    behaviour = (ds.Answer(("104.244.42.1",), truncated=True),)
    result, elapsed, _ = check({"x.test": behaviour}, "x.test", tcp=False, window=0.3)
    assert result.failure is Failure.CONNECTION_REFUSED
    assert result.elapsed_ms < 250  # until the TCP failure, not the end of the window
    assert len(result.replies) == 1 and result.replies[0].records == ()  # the TC reply
    assert elapsed < 1.0


def test_truncated_reply_with_slow_tcp_times_out() -> None:
    behaviour = (ds.Answer(("104.244.42.1",), truncated=True, tcp_delay=5.0),)
    result, elapsed, seen = check({"x.test": behaviour}, "x.test", timeout=0.5)
    assert result.failure is Failure.TIMEOUT
    assert [q.transport for q in seen] == ["udp", "tcp"]
    assert elapsed < 1.0


# ------------------------------------------------------------- timing and ipv6


def test_t_ms_is_relative_to_t0() -> None:
    async def main() -> DNSQuery:
        async with ds.DNSServer({"x.test": ds.answer("198.51.100.7")}) as server:
            t0 = time.monotonic() - 1.5
            return await query(
                parse_resolver(server.spec), "x.test", "A", origin="vantage", timeout=1, t0=t0
            )

    result = run(main())
    assert 1500 <= result.t_ms < 2000


def test_ipv6_loopback_server() -> None:
    async def main() -> DNSQuery:
        async with ds.DNSServer({"x.test": ds.answer("198.51.100.7")}, host="::1") as server:
            return await ask(server, "x.test", window=0.05)

    try:
        result = run(main())
    except OSError as exc:  # pragma: no cover - no IPv6 loopback in this namespace
        pytest.skip(f"no ::1: {exc}")
    assert result.failure is None
    assert result.resolver.startswith("udp://[::1]:")
    assert result.replies[0].source.startswith("[::1]:")


# ------------------------------------------------------------------ resolvers


@pytest.mark.parametrize(
    ("text", "expected", "label"),
    [
        ("10.0.0.1", Resolver("udp", "10.0.0.1", 53), "udp://10.0.0.1:53"),
        (" 10.0.0.1:5353 ", Resolver("udp", "10.0.0.1", 5353), "udp://10.0.0.1:5353"),
        ("[::1]:5353", Resolver("udp", "::1", 5353), "udp://[::1]:5353"),
        ("[2001:DB8::1]", Resolver("udp", "2001:db8::1", 53), "udp://[2001:db8::1]:53"),
        ("2001:db8::53", Resolver("udp", "2001:db8::53", 53), "udp://[2001:db8::53]:53"),
        (
            "https://1.1.1.1/dns-query",
            Resolver("https", "1.1.1.1", 443, url="https://1.1.1.1/dns-query"),
            "https://1.1.1.1/dns-query",
        ),
        (
            "https://dns.example.test:8443/q?x=1",
            Resolver("https", "dns.example.test", 8443, url="https://dns.example.test:8443/q?x=1"),
            "https://dns.example.test:8443/q?x=1",
        ),
        (
            "https://[2001:db8::1]",
            Resolver("https", "2001:db8::1", 443, url="https://[2001:db8::1]/dns-query"),
            "https://[2001:db8::1]/dns-query",
        ),
    ],
)
def test_parse_resolver(text: str, expected: Resolver, label: str) -> None:
    assert parse_resolver(text) == expected
    assert parse_resolver(text).label == label


@pytest.mark.parametrize(
    "text",
    [
        "",
        "foo",
        "dns.google",
        "1.2.3.4:0",
        "1.2.3.4:70000",
        "1.2.3.4:port",
        "1.2.3",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[10.0.0.1]",
        "udp://1.2.3.4",
        "http://1.1.1.1/dns-query",
        "https://",
        "https://1.1.1.1:99999/dns-query",
        "https://user:pw@1.1.1.1/dns-query",
    ],
)
def test_parse_resolver_rejects(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_resolver(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message and "expected IP[:PORT]" in message


def test_system_label() -> None:
    assert Resolver("udp", "127.0.0.53", 53, system=True).label == "system:udp://127.0.0.53:53"


def test_system_resolver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# generated\n; comment\nsearch lan\nnameserver bogus\nnameserver 127.0.0.53\n"
        "nameserver 10.0.0.1\noptions edns0\n"
    )
    resolver = system_resolver(str(conf))
    assert resolver == Resolver("udp", "127.0.0.53", 53, system=True)
    conf.write_text("nameserver fe80::1%eth0\n")
    assert system_resolver(str(conf)).host == "fe80::1%eth0"


@pytest.mark.parametrize(
    "content", [None, "", "search lan\n# nameserver 1.1.1.1\n", "nameserver\n"]
)
def test_system_resolver_missing(tmp_path: Path, content: str | None) -> None:
    conf = tmp_path / "resolv.conf"
    if content is not None:
        conf.write_text(content)
    with pytest.raises(UsageError, match="no system resolver") as info:
        system_resolver(str(conf))
    assert "--resolver" in str(info.value)


def test_reply_flood_is_capped() -> None:
    flood = tuple(ds.Answer((f"198.51.100.{i}",), delay=i * 0.001) for i in range(1, 41))
    result, _, _ = check({"x.test": flood}, "x.test", window=0.3)
    assert len(result.replies) == MAX_REPLIES
    assert result.addresses == ("198.51.100.1",)


def test_threaded_server_serves_asyncio_run_callers() -> None:
    with ds.serve_in_thread({"x.test": ds.answer("198.51.100.7")}, default=ds.REFUSED) as server:
        resolver = parse_resolver(server.spec)

        def ask_one(name: str) -> DNSQuery:
            t0 = time.monotonic()
            return run(query(resolver, name, "A", origin="vantage", timeout=1, t0=t0, window=0))

        assert ask_one("x.test").addresses == ("198.51.100.7",)
        assert ask_one("other.test").failure is Failure.DNS_REFUSED
        server.set("other.test", ds.answer("198.51.100.8"))
        assert ask_one("Other.Test.").addresses == ("198.51.100.8",)
        assert [q.qname for q in server.queries] == ["x.test", "other.test", "other.test"]


@pytest.mark.parametrize("kind", ["pointer_loop", "huge_counts", "cut"])
def test_malformed_replies_are_bad_replies_within_the_bound(kind: str) -> None:
    result, elapsed, _ = check({"x.test": (ds.Mangled(kind),)}, "x.test", timeout=0.5)
    assert result.failure is Failure.DNS_BAD_REPLY
    assert result.replies == ()
    assert elapsed < 1.0


@pytest.mark.parametrize("kind", ["pointer_loop", "huge_counts", "cut"])
def test_a_malformed_reply_does_not_hide_the_real_one(kind: str) -> None:
    behaviour = (ds.Mangled(kind), ds.Answer(("198.51.100.9",), delay=0.05))
    result, _, _ = check({"x.test": behaviour}, "x.test", window=0.1)
    assert result.failure is None and result.addresses == ("198.51.100.9",)
