"""The classifier's decision table, one built measurement per row, and its edge cases."""

from __future__ import annotations

import pytest

from probe.classify import classify
from probe.failures import Failure as F
from probe.observations import DomainObservations, from_dict, to_dict
from probe.sites import families, registrable_domain, same_site
from probe.verdict import Method as M
from probe.verdict import Status as S
from probe.verdict import Trigger as T
from tests.probe.builders import (
    ADDR,
    ADDR2,
    ADDR6,
    PAGE,
    control_host,
    control_site,
    control_sni_http,
    dns,
    endpoints,
    https,
    plain,
    replace,
    reply,
    resolves,
    response,
    site,
    skipped,
    slow,
    working,
)

LAB_PAGE = "<html><title>Blocked</title><body>reachprobe-lab-blockpage</body></html>"
PTA_PAGE = "<p>This website is PROHIBITED for viewership from within Pakistan.</p>"
SAFEWEB = (
    "As per your subscription of Nayatel Safeweb service, the website you are trying to "
    "access is blocked"
)
CENSOR = "5.6.7.8"  # a public address no control resolver gives
BOGON = "10.10.34.36"


def dns_fails(failure: F, *, control: F | None = None) -> DomainObservations:
    """The vantage resolver fails; the control answers ADDR (or fails with ``control``)."""
    control_q = (
        dns(ADDR, origin="control") if control is None else dns(origin="control", failure=control)
    )
    reachable = endpoints(ADDR, origins=("control",)) if control is None else ()
    return site(dns=[dns(failure=failure), control_q], endpoints=reachable)


def poisoned(answer: str, *extra: object) -> DomainObservations:
    """The vantage resolver answers ``answer``; the control gives ADDR, which works."""
    bad = [e for e in extra if not isinstance(e, str)]
    return site(
        dns=[dns(answer), dns(ADDR, origin="control")],
        endpoints=[*endpoints(ADDR, origins=("control",)), *bad],  # type: ignore[list-item]
    )


def at_443(**kwargs: object) -> DomainObservations:
    """DNS agrees on ADDR; the 443 endpoint is built from ``kwargs``; port 80 redirects."""
    return site(dns=resolves(ADDR), endpoints=[https(ADDR, **kwargs), plain(ADDR)])  # type: ignore[arg-type]


def at_80(**kwargs: object) -> DomainObservations:
    """DNS agrees on ADDR; HTTPS works; the port-80 endpoint is built from ``kwargs``."""
    return site(dns=resolves(ADDR), endpoints=[https(ADDR), plain(ADDR, **kwargs)])  # type: ignore[arg-type]


def with_controls(obs: DomainObservations, *controls: object) -> DomainObservations:
    return site(dns=obs.dns, endpoints=obs.endpoints, controls=controls)  # type: ignore[arg-type]


# (id, observations, status, blocking, trigger)
TABLE: list[tuple[str, DomainObservations, S, tuple[M, ...], T | None]] = [
    ("accessible", working(), S.ACCESSIBLE, (), None),
    # --- DNS
    ("dns.nxdomain", dns_fails(F.DNS_NXDOMAIN), S.BLOCKED, (M.DNS_NXDOMAIN,), T.DNS),
    ("dns.servfail", dns_fails(F.DNS_SERVFAIL), S.BLOCKED, (M.DNS_SERVFAIL,), T.DNS),
    ("dns.refused", dns_fails(F.DNS_REFUSED), S.BLOCKED, (M.DNS_REFUSED,), T.DNS),
    ("dns.no_answer", dns_fails(F.DNS_NO_ANSWER), S.BLOCKED, (M.DNS_NO_ANSWER,), T.DNS),
    ("dns.timeout", dns_fails(F.TIMEOUT), S.BLOCKED, (M.DNS_TIMEOUT,), T.DNS),
    (
        "dns.bogon",
        poisoned(BOGON, https(BOGON, origins=("vantage",), tcp_failure=F.CONNECTION_REFUSED)),
        S.BLOCKED,
        (M.DNS_BOGON,),
        T.DNS,
    ),
    (
        "dns.bogon never dialled",
        poisoned("127.0.0.1", skipped("127.0.0.1")),
        S.BLOCKED,
        (M.DNS_BOGON,),
        T.DNS,
    ),
    (
        "dns.mismatch + tls.invalid_cert at the censor's server",
        poisoned(CENSOR, https(CENSOR, origins=("vantage",), tls_failure=F.TLS_UNKNOWN_AUTHORITY)),
        S.BLOCKED,
        (M.DNS_MISMATCH, M.TLS_INVALID_CERT),
        T.DNS,
    ),
    (
        "dns.mismatch + blockpage served at the answered address",
        poisoned(
            CENSOR,
            plain(CENSOR, origins=("vantage",), http=response(CENSOR, 80, body=PTA_PAGE)),
        ),
        S.BLOCKED,
        (M.DNS_MISMATCH, M.HTTP_BLOCKPAGE),
        T.DNS,
    ),
    (
        "dns.injection (the later reply was right)",
        site(
            dns=[dns(replies=[reply(BOGON), reply(ADDR)]), dns(ADDR, origin="control")],
            endpoints=endpoints(ADDR),
        ),
        S.BLOCKED,
        (M.DNS_INJECTION,),
        T.DNS,
    ),
    (
        "down: NXDOMAIN at both resolvers",
        dns_fails(F.DNS_NXDOMAIN, control=F.DNS_NXDOMAIN),
        S.DOWN,
        (),
        None,
    ),
    (
        "inconclusive: vantage DNS fails and no control resolver answered",
        dns_fails(F.TIMEOUT, control=F.TIMEOUT),
        S.INCONCLUSIVE,
        (),
        None,
    ),
    # --- TCP / IP
    (
        "tcp.timeout",
        site(dns=resolves(ADDR), endpoints=endpoints(ADDR, tcp_failure=F.TIMEOUT)[:1]),
        S.BLOCKED,
        (M.TCP_TIMEOUT,),
        T.IP,
    ),
    (
        "tcp.refused (RST answering the SYN) on both ports",
        site(
            dns=resolves(ADDR),
            endpoints=[
                https(ADDR, tcp_failure=F.CONNECTION_REFUSED),
                plain(ADDR, tcp_failure=F.CONNECTION_REFUSED),
            ],
        ),
        S.BLOCKED,
        (M.TCP_REFUSED,),
        T.IP,
    ),
    ("tcp.reset", at_443(tcp_failure=F.CONNECTION_RESET), S.BLOCKED, (M.TCP_RESET,), T.IP),
    # --- TLS / SNI
    ("tls.reset by SNI", at_443(tls_failure=F.CONNECTION_RESET), S.BLOCKED, (M.TLS_RESET,), T.SNI),
    (
        "tls.timeout for both SNIs: by IP",
        at_443(tls_failure=F.TIMEOUT, control_sni=F.TIMEOUT),
        S.BLOCKED,
        (M.TLS_TIMEOUT,),
        T.IP,
    ),
    ("tls.eof by SNI", at_443(tls_failure=F.EOF), S.BLOCKED, (M.TLS_EOF,), T.SNI),
    (
        "tls.invalid_cert only with the target SNI (selective MITM)",
        at_443(tls_failure=F.TLS_UNKNOWN_AUTHORITY, issuer="Interceptor CA"),
        S.BLOCKED,
        (M.TLS_INVALID_CERT,),
        T.SNI,
    ),
    (
        "tls.invalid_cert for every SNI: by IP",
        at_443(
            tls_failure=F.TLS_UNKNOWN_AUTHORITY,
            issuer="Interceptor CA",
            control_issuer="Interceptor CA",
        ),
        S.BLOCKED,
        (M.TLS_INVALID_CERT,),
        T.IP,
    ),
    # --- HTTP / Host
    (
        "http.reset after the handshake, control SNI fine",
        at_443(http=response(failure=F.CONNECTION_RESET), http_control_sni=control_sni_http()),
        S.BLOCKED,
        (M.HTTP_RESET,),
        T.SNI,
    ),
    (
        "http.timeout on plaintext, control Host fine",
        at_80(http=response(ADDR, 80, failure=F.TIMEOUT), control_host=control_host()),
        S.BLOCKED,
        (M.HTTP_TIMEOUT,),
        T.HOST,
    ),
    (
        "http.eof on plaintext, control Host fails too",
        at_80(http=response(ADDR, 80, failure=F.EOF), control_host=control_host(failure=F.EOF)),
        S.BLOCKED,
        (M.HTTP_EOF,),
        T.IP,
    ),
    (
        "http.blockpage injected on plaintext",
        at_80(http=response(ADDR, 80, body=LAB_PAGE, title="Blocked")),
        S.BLOCKED,
        (M.HTTP_BLOCKPAGE,),
        T.HOST,
    ),
    (
        "http.blockpage by redirect (Jazz)",
        at_80(
            http=response(ADDR, 80, location="http://119.73.65.87:8080/redirect.html?accessurl=x")
        ),
        S.BLOCKED,
        (M.HTTP_BLOCKPAGE,),
        T.HOST,
    ),
    (
        "http.redirect to another site",
        at_80(http=response(ADDR, 80, location="http://warning.example.net/")),
        S.BLOCKED,
        (M.HTTP_REDIRECT,),
        T.HOST,
    ),
    (
        "http.diff: plaintext page unlike the HTTPS one",
        at_80(http=response(ADDR, 80, body="<title>Notice</title>", title="Notice")),
        S.BLOCKED,
        (M.HTTP_DIFF,),
        T.HOST,
    ),
    (
        "http.diff: plaintext status class differs",
        at_80(http=response(ADDR, 80, status=403, title="X")),
        S.BLOCKED,
        (M.HTTP_DIFF,),
        T.HOST,
    ),
    # --- throughput
    (
        "throttle: target SNI 20x slower than control SNI",
        at_443(http=slow(150), http_control_sni=control_sni_http(rate_kbps=3000)),
        S.BLOCKED,
        (M.THROTTLE,),
        T.SNI,
    ),
    (
        "throttle: a body cut by the deadline still has a rate",
        at_443(
            http=response(status=200, failure=F.TIMEOUT, body_length=200_000, body_ms=10_000),
            http_control_sni=control_sni_http(rate_kbps=5000),
        ),
        S.BLOCKED,
        (M.THROTTLE,),
        T.SNI,
    ),
    (
        "no throttle when both SNIs are equally slow",
        at_443(http=slow(150), http_control_sni=control_sni_http(rate_kbps=200)),
        S.ACCESSIBLE,
        (),
        None,
    ),
    # --- several methods at once: Method order, earliest trigger
    (
        "tls.reset (SNI) + plaintext http.reset (Host)",
        site(
            dns=resolves(ADDR),
            endpoints=[
                https(ADDR, tls_failure=F.CONNECTION_RESET),
                plain(
                    ADDR,
                    http=response(ADDR, 80, failure=F.CONNECTION_RESET),
                    control_host=control_host(),
                ),
            ],
        ),
        S.BLOCKED,
        (M.TLS_RESET, M.HTTP_RESET),
        T.SNI,
    ),
    # --- offline, down, inconclusive
    (
        "offline: control sites unreachable too",
        with_controls(at_443(tcp_failure=F.TIMEOUT), control_site(False), control_site(False)),
        S.OFFLINE,
        (),
        None,
    ),
    (
        "down: 5xx over HTTPS and HTTP",
        site(
            dns=resolves(ADDR),
            endpoints=[
                https(ADDR, http=response(status=502)),
                plain(ADDR, http=response(ADDR, 80, status=503)),
            ],
        ),
        S.DOWN,
        (),
        None,
    ),
    (
        "inconclusive: nothing worked and no control site measured",
        site(dns=[dns(failure=F.TIMEOUT), dns(origin="control", failure=F.TIMEOUT)], controls=()),
        S.INCONCLUSIVE,
        (),
        None,
    ),
]


@pytest.mark.parametrize(
    ("obs", "status", "blocking", "trigger"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE]
)
def test_decision_table(
    obs: DomainObservations, status: S, blocking: tuple[M, ...], trigger: T | None
) -> None:
    verdict = classify(obs)
    assert (verdict.status, verdict.blocking, verdict.trigger) == (status, blocking, trigger), (
        verdict.reasons
    )
    assert verdict.reasons, "every verdict explains itself"


def test_table_covers_every_method_and_status() -> None:
    seen_methods = {m for c in TABLE for m in c[3]}
    seen_status = {c[2] for c in TABLE}
    assert seen_methods == set(M)
    assert seen_status == set(S)


# ------------------------------------------------------------------ edge cases


def test_ipv6_without_route_is_ignored() -> None:
    obs = site(
        dns=resolves(ADDR, ADDR6),
        endpoints=[
            *endpoints(ADDR),
            https(ADDR6, tcp_failure=F.NETWORK_UNREACHABLE),
            plain(ADDR6, tcp_failure=F.NETWORK_UNREACHABLE),
        ],
    )
    verdict = classify(obs)
    assert verdict.status is S.ACCESSIBLE
    assert any("IPv6 has no route" in n for n in verdict.notes)


def test_unreachable_everywhere_counts_as_rejection_when_online() -> None:
    obs = site(dns=resolves(ADDR), endpoints=[https(ADDR, tcp_failure=F.HOST_UNREACHABLE)])
    verdict = classify(obs)
    assert (verdict.status, verdict.blocking) == (S.BLOCKED, (M.TCP_REFUSED,))


def test_partial_address_failure_is_accessible_and_named() -> None:
    obs = site(
        dns=resolves(ADDR, ADDR2),
        endpoints=[*endpoints(ADDR), https(ADDR2, tcp_failure=F.TIMEOUT), plain(ADDR2)],
    )
    verdict = classify(obs)
    assert verdict.status is S.ACCESSIBLE
    assert any(f"{ADDR2}:443" in n and "timeout" in n for n in verdict.notes)
    assert not any("timeout" in r for r in verdict.reasons), "a side detail is not a reason"


def test_no_ipv6_anywhere_is_not_worth_a_reason() -> None:
    obs = working()
    empty = [
        dns(origin=origin, qtype="AAAA", failure=F.DNS_NO_ANSWER)  # type: ignore[arg-type]
        for origin in ("vantage", "control")
    ]
    verdict = classify(replace(obs, dns=obs.dns + tuple(empty)))
    assert verdict.status is S.ACCESSIBLE
    assert not any("AAAA" in r for r in verdict.reasons), verdict.reasons


def test_only_vantage_addresses_decide_whether_a_path_works() -> None:
    """A user dials what the vantage resolver gave: a working control-only
    address must not hide that every vantage address fails."""
    near = ADDR.rsplit(".", 1)[0] + ".99"  # same /24 as the control's: judged legitimate
    obs = site(
        dns=resolves(near, control=[ADDR]),
        endpoints=[
            https(
                near,
                origins=("vantage",),
                tls_failure=F.TLS_UNKNOWN_AUTHORITY,
                control_sni=None,
                control_issuer="Test Root CA",
                issuer="Test Root CA",
            ),
            plain(near, origins=("vantage",)),
            *endpoints(ADDR, origins=("control",)),
        ],
    )
    verdict = classify(obs)
    assert (verdict.status, verdict.blocking) == (S.BLOCKED, (M.TLS_INVALID_CERT,))


def test_optin_filter_is_not_called_state_censorship() -> None:
    verdict = classify(at_80(http=response(ADDR, 80, body=SAFEWEB, title="Safeweb")))
    assert verdict.status is S.BLOCKED
    assert verdict.blockpage == "pk.nayatel.safeweb"
    assert "opt-in filter" in verdict.reasons[0] and "not state censorship" in verdict.reasons[0]


def test_state_blockpage_reports_its_fingerprint_and_https_still_works() -> None:
    verdict = classify(at_80(http=response(ADDR, 80, body=PTA_PAGE)))
    assert verdict.blockpage == "pk.pta.body"
    assert verdict.https_ok is True
    assert not any("opt-in" in r for r in verdict.reasons)


def test_https_not_ok_when_dns_blocks() -> None:
    verdict = classify(dns_fails(F.DNS_NXDOMAIN))
    assert verdict.https_ok is False


@pytest.mark.parametrize(
    "location",
    ["https://x.com/", "https://twitter.com/home", "https://www.x.com/", "/login", "https://t.co/"],
)
def test_same_site_redirects_are_normal(location: str) -> None:
    verdict = classify(at_80(http=response(ADDR, 80, status=301, location=location)))
    assert verdict.status is S.ACCESSIBLE, verdict.reasons


def test_same_site_rule() -> None:
    assert same_site("x.com", "api.twitter.com")
    assert same_site("pbs.twimg.com", "x.com")
    assert same_site("www.dawn.com.pk", "dawn.com.pk")
    assert not same_site("dawn.com.pk", "geo.com.pk")
    assert not same_site("x.com", "x.com.evil.example")
    assert registrable_domain("a.b.example.co.uk.") == "example.co.uk"
    assert registrable_domain("119.73.65.87") == "119.73.65.87"


def test_same_site_uses_the_public_suffix_list_and_the_platforms() -> None:
    assert registrable_domain("www.bbc.co.uk") == "bbc.co.uk"
    assert registrable_domain("a.b.city.kawasaki.jp") == "city.kawasaki.jp"  # an exception rule
    assert not same_site("alice.github.io", "bob.github.io")  # private section of the list
    assert same_site("www.facebook.com", "static.xx.fbcdn.net")  # from platforms.toml
    assert not same_site("facebook.com", "twitter.com")
    assert frozenset({"x.com", "twitter.com", "t.co", "twimg.com"}) in families()


def test_private_address_is_legitimate_when_the_control_agrees() -> None:
    lab = "10.99.0.10"
    verdict = classify(working(lab))
    assert verdict.status is S.ACCESSIBLE, verdict.reasons


def test_private_address_is_legitimate_when_it_proves_itself_by_tls() -> None:
    lab = "10.99.0.10"
    obs = site(
        dns=[dns(lab), dns(ADDR, origin="control")],
        endpoints=[*endpoints(lab, origins=("vantage",)), *endpoints(ADDR, origins=("control",))],
    )
    assert classify(obs).status is S.ACCESSIBLE


def test_cdn_answer_in_the_same_slash24_is_legitimate() -> None:
    sibling = "104.244.42.200"
    obs = site(
        dns=[dns(sibling), dns(ADDR, origin="control")],
        endpoints=[
            https(sibling, origins=("vantage",), tls_failure=F.CONNECTION_RESET),
            https(ADDR, origins=("control",), tls_failure=F.CONNECTION_RESET),
        ],
    )
    verdict = classify(obs)
    assert (verdict.blocking, verdict.trigger) == ((M.TLS_RESET,), T.SNI)


def test_aaaa_timeout_while_a_resolves_is_not_blocking() -> None:
    obs = site(
        dns=[*resolves(ADDR), dns(qtype="AAAA", failure=F.TIMEOUT), dns(ADDR6, origin="control")],
        endpoints=endpoints(ADDR),
    )
    verdict = classify(obs)
    assert verdict.status is S.ACCESSIBLE
    assert any("not counted as blocking" in n for n in verdict.notes)


def test_dns_failure_is_not_blamed_on_the_domain_when_the_resolver_is_broken() -> None:
    obs = with_controls(dns_fails(F.TIMEOUT), control_site(vantage_dns_ok=False))
    # The control-resolver addresses work, so nothing else is wrong: no verdict of blocking.
    verdict = classify(obs)
    assert verdict.status is S.ACCESSIBLE
    assert any("also fails for the control sites" in n for n in verdict.notes)


def test_fingerprint_survives_an_offline_looking_vantage() -> None:
    obs = with_controls(at_80(http=response(ADDR, 80, body=LAB_PAGE)), control_site(False))
    obs = site(
        dns=obs.dns,
        endpoints=(https(ADDR, tcp_failure=F.TIMEOUT), obs.endpoints[1]),
        controls=obs.controls,
    )
    verdict = classify(obs)
    assert (verdict.status, verdict.blockpage) == (S.BLOCKED, "lab.blockpage")


def test_tls_protocol_garbage_is_inconclusive() -> None:
    verdict = classify(at_443(tls_failure=F.TLS_PROTOCOL_ERROR))
    assert verdict.status is S.INCONCLUSIVE
    assert any("tls_protocol_error" in r for r in verdict.reasons)


def test_no_control_resolver_trusts_a_public_answer_but_not_a_bogon() -> None:
    trusted = site(dns=[dns(ADDR)], endpoints=endpoints(ADDR, tls_failure=F.CONNECTION_RESET))
    verdict = classify(trusted)
    assert verdict.blocking == (M.TLS_RESET,)
    assert any("could not be verified" in n for n in verdict.notes)
    bogus = site(dns=[dns(BOGON)], endpoints=[https(BOGON, tcp_failure=F.TIMEOUT)])
    assert classify(bogus).blocking == (M.DNS_BOGON,)


def test_classify_is_pure_and_survives_the_codec() -> None:
    obs = at_80(http=response(ADDR, 80, body=PTA_PAGE))
    again = from_dict(DomainObservations, to_dict(obs))
    assert classify(obs) == classify(obs) == classify(again)


def test_explicit_fingerprints_replace_the_shipped_ones() -> None:
    obs = at_80(http=response(ADDR, 80, body=LAB_PAGE, title="Blocked"))
    verdict = classify(obs, fingerprints=())
    assert verdict.blockpage is None
    assert verdict.blocking == (M.HTTP_DIFF,)  # still caught, as a difference from HTTPS


def test_unchanged_plaintext_page_is_not_a_diff() -> None:
    verdict = classify(at_80(http=response(ADDR, 80, body=PAGE + "  ")))
    assert verdict.status is S.ACCESSIBLE


def test_nxdomain_for_one_type_counts_when_the_other_answer_is_forged() -> None:
    vantage = [dns(CENSOR), dns(qtype="AAAA", failure=F.DNS_NXDOMAIN)]
    control = [dns(ADDR, origin="control"), dns(ADDR6, origin="control")]
    obs = site(dns=vantage + control, endpoints=endpoints(ADDR, origins=("control",)))
    verdict = classify(obs)
    assert verdict.blocking == (M.DNS_NXDOMAIN, M.DNS_MISMATCH)


def test_nxdomain_for_one_type_is_noted_when_the_other_resolves() -> None:
    vantage = [dns(ADDR), dns(qtype="AAAA", failure=F.DNS_NXDOMAIN)]
    control = [dns(ADDR, origin="control"), dns(ADDR6, origin="control")]
    verdict = classify(site(dns=vantage + control, endpoints=endpoints(ADDR)))
    assert verdict.status is S.ACCESSIBLE


# ------------------------------------------- notes never decide or contradict


def _garbage_for_x(control_aaaa: F) -> DomainObservations:
    """The vantage resolver answers x.com with malformed replies (A and AAAA);
    the control answers A, and has no AAAA (``control_aaaa``: how it says so)."""
    return site(
        dns=[
            dns(failure=F.DNS_BAD_REPLY),
            dns(qtype="AAAA", failure=F.DNS_BAD_REPLY),
            dns(ADDR, origin="control"),
            dns(origin="control", qtype="AAAA", failure=control_aaaa),
        ],
        endpoints=endpoints(ADDR, origins=("control",)),
    )


def test_malformed_vantage_replies_give_one_verdict_whatever_the_aaaa() -> None:
    """Was ``down`` or ``inconclusive`` from run to run: the AAAA query (no AAAA
    at the control either) was read as "the domain's DNS is broken"."""
    verdicts = {classify(_garbage_for_x(aaaa)) for aaaa in (F.DNS_NO_ANSWER, F.TIMEOUT)}
    assert {(v.status, v.blocking) for v in verdicts} == {(S.INCONCLUSIVE, ())}
    for verdict in verdicts:
        assert not any("broken" in r for r in (*verdict.reasons, *verdict.notes))
        assert any("dns_bad_reply" in r for r in verdict.reasons)


def test_nxdomain_block_carries_no_contradicting_reason() -> None:
    obs = site(
        dns=[
            dns(failure=F.DNS_NXDOMAIN),
            dns(qtype="AAAA", failure=F.DNS_NXDOMAIN),
            dns(ADDR, origin="control"),
            dns(origin="control", qtype="AAAA", failure=F.DNS_NO_ANSWER),
        ],
        endpoints=endpoints(ADDR, origins=("control",)),
    )
    verdict = classify(obs)
    assert (verdict.status, verdict.blocking) == (S.BLOCKED, (M.DNS_NXDOMAIN,))
    assert not any("broken" in r or "AAAA" in r for r in verdict.reasons), verdict.reasons
    assert any("does not count" in n and "AAAA" in n for n in verdict.notes), verdict.notes


@pytest.mark.parametrize(
    ("control_a", "status"),
    [(F.DNS_NXDOMAIN, S.DOWN), (F.DNS_SERVFAIL, S.DOWN), (F.TIMEOUT, S.INCONCLUSIVE)],
)
def test_down_needs_the_control_to_fail_for_a(control_a: F, status: S) -> None:
    for control_aaaa in (F.DNS_NXDOMAIN, F.TIMEOUT, F.DNS_NO_ANSWER):
        obs = site(
            dns=[
                dns(failure=F.DNS_NXDOMAIN),
                dns(qtype="AAAA", failure=F.DNS_NXDOMAIN),
                dns(origin="control", failure=control_a),
                dns(origin="control", qtype="AAAA", failure=control_aaaa),
            ],
            endpoints=(),
        )
        assert classify(obs).status is status, (control_a, control_aaaa)


_AAAA_SIDES = [
    (vantage, control)
    for vantage in (F.DNS_NO_ANSWER, F.TIMEOUT, F.DNS_BAD_REPLY, F.DNS_SERVFAIL)
    for control in (F.DNS_NO_ANSWER, F.TIMEOUT)
]


@pytest.mark.parametrize("case", [c for c in TABLE if c[1].dns], ids=lambda c: c[0])
def test_an_aaaa_side_detail_never_decides_the_verdict(
    case: tuple[str, DomainObservations, S, tuple[M, ...], T | None],
) -> None:
    """No AAAA anywhere, however each resolver says so, leaves every verdict as it was."""
    _, obs, status, blocking, trigger = case
    if any(q.qtype == "AAAA" for q in obs.dns):
        pytest.skip("the row is about AAAA itself")
    has_control = any(q.origin == "control" for q in obs.dns)
    for vantage, control in _AAAA_SIDES:
        extra = [dns(qtype="AAAA", failure=vantage)]
        if has_control:
            extra.append(dns(origin="control", qtype="AAAA", failure=control))
        verdict = classify(replace(obs, dns=obs.dns + tuple(extra)))
        got = (verdict.status, verdict.blocking, verdict.trigger)
        assert got == (status, blocking, trigger), (vantage, control, verdict.reasons)
