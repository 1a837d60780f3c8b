"""Decision-table rows that need the control helper's view from outside the censor."""

from __future__ import annotations

import dataclasses

import pytest

from probe.classify import classify
from probe.failures import Failure as F
from probe.observations import DomainObservations, HelperEndpoint, from_dict, to_dict
from probe.verdict import Method as M
from probe.verdict import Status as S
from probe.verdict import Trigger as T
from tests.probe.builders import (
    ADDR,
    ADDR2,
    dns,
    endpoints,
    helper,
    https,
    plain,
    replace,
    resolves,
    response,
    site,
)
from tests.probe.test_classify import TABLE, at_80

CENSOR = "5.6.7.8"
ELSEWHERE = "https://www.mozilla.org/"


def down_everywhere() -> DomainObservations:
    return site(
        dns=resolves(ADDR),
        endpoints=[
            https(ADDR, tcp_failure=F.TIMEOUT),
            plain(ADDR, tcp_failure=F.TIMEOUT),
        ],
    )


def own_certificate() -> DomainObservations:
    return site(
        dns=resolves(ADDR),
        endpoints=[https(ADDR, tls_failure=F.TLS_UNKNOWN_AUTHORITY), plain()],
    )


def cdn_elsewhere() -> DomainObservations:
    """The vantage gets ADDR2 (another /24 than the control's ADDR); SNI is reset there."""
    return site(
        dns=[dns(ADDR2), dns(ADDR, origin="control")],
        endpoints=[
            https(ADDR2, origins=("vantage",), tls_failure=F.CONNECTION_RESET),
            https(ADDR, origins=("control",), tls_failure=F.CONNECTION_RESET),
        ],
    )


def http_only(page: str, title: str) -> DomainObservations:
    """A site without HTTPS anywhere: 443 refused here and at the helper."""
    return site(
        dns=resolves(ADDR),
        endpoints=[
            https(ADDR, tcp_failure=F.CONNECTION_REFUSED),
            plain(ADDR, http=response(ADDR, 80, body=page, title=title)),
        ],
    )


def http_only_helper() -> object:
    view = helper()
    return dataclasses.replace(
        view,
        endpoints=(
            HelperEndpoint(ADDR, 443, F.CONNECTION_REFUSED),
            HelperEndpoint(ADDR, 80, None),
        ),
    )


def ghost_answer() -> DomainObservations:
    """The vantage resolver answers a name that does not exist; that address fails."""
    return site(
        dns=[dns(CENSOR), dns(origin="control", failure=F.TIMEOUT)],
        endpoints=[
            https(CENSOR, origins=("vantage",), tcp_failure=F.TIMEOUT),
            plain(CENSOR, origins=("vantage",), tcp_failure=F.TIMEOUT),
        ],
    )


BIG = "<html><title>X</title>" + "x" * 4000
SMALL = "<html><title>Welcome</title>hi</html>"

# (id, observations, helper view, status, blocking, trigger, without the helper)
ROWS: list[tuple[str, DomainObservations, object, S, tuple[M, ...], T | None, S]] = [
    ("down everywhere", down_everywhere(), helper(tcp=F.TIMEOUT), S.DOWN, (), None, S.BLOCKED),
    (
        "the site's own certificate",
        own_certificate(),
        helper(tls=F.TLS_UNKNOWN_AUTHORITY),
        S.DOWN,
        (),
        None,
        S.BLOCKED,
    ),
    (
        "the site's own cross-site redirect (helper)",
        at_80(http=response(ADDR, 80, status=301, location=ELSEWHERE)),
        helper(redirects=[(301, ELSEWHERE)]),
        S.ACCESSIBLE,
        (),
        None,
        S.BLOCKED,
    ),
    (
        "a censor's cross-site redirect the helper did not see",
        at_80(http=response(ADDR, 80, status=302, location="http://blocked.example/")),
        helper(redirects=[(301, ELSEWHERE)]),
        S.BLOCKED,
        (M.HTTP_REDIRECT,),
        T.HOST,
        S.BLOCKED,
    ),
    (
        "CDN answer proven by the helper's TLS",
        cdn_elsewhere(),
        helper(ADDR, ADDR2),
        S.BLOCKED,
        (M.TLS_RESET,),
        T.SNI,
        S.BLOCKED,
    ),
    (
        "CDN answer proven by the helper's ASN",
        cdn_elsewhere(),
        helper(ADDR, asns={ADDR: 13414, ADDR2: 13414}),
        S.BLOCKED,
        (M.TLS_RESET,),
        T.SNI,
        S.BLOCKED,
    ),
    (
        "http:// site: plaintext differs from the helper's page",
        http_only(SMALL, "Welcome"),
        http_only_helper(),
        S.BLOCKED,
        (M.HTTP_DIFF,),
        None,
        S.BLOCKED,
    ),
    (
        "http:// site: plaintext matches the helper's page",
        http_only(BIG, "X"),
        http_only_helper(),
        S.ACCESSIBLE,
        (),
        None,
        S.BLOCKED,
    ),
    (
        "the helper's NXDOMAIN: a failing vantage answer is DNS blocking",
        ghost_answer(),
        helper(dns_failure=F.DNS_NXDOMAIN),
        S.BLOCKED,
        (M.DNS_MISMATCH,),
        T.DNS,
        S.BLOCKED,
    ),
    (
        "NXDOMAIN here and at the helper: down",
        site(dns=[dns(failure=F.DNS_NXDOMAIN), dns(origin="control", failure=F.TIMEOUT)]),
        helper(dns_failure=F.DNS_NXDOMAIN),
        S.DOWN,
        (),
        None,
        S.INCONCLUSIVE,
    ),
    (
        "helper unreachable: SNI filtering still found",
        site(
            dns=resolves(ADDR),
            endpoints=[https(ADDR, tls_failure=F.CONNECTION_RESET), plain()],
        ),
        helper(failure=F.TIMEOUT),
        S.BLOCKED,
        (M.TLS_RESET,),
        T.SNI,
        S.BLOCKED,
    ),
]


@pytest.mark.parametrize(
    ("obs", "view", "status", "blocking", "trigger", "alone"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_helper_rows(
    obs: DomainObservations,
    view: object,
    status: S,
    blocking: tuple[M, ...],
    trigger: T | None,
    alone: S,
) -> None:
    verdict = classify(replace(obs, helper=view))
    assert (verdict.status, verdict.blocking, verdict.trigger) == (status, blocking, trigger), (
        verdict.reasons
    )
    assert classify(obs).status is alone  # the row needs the helper (or says it does not)
    again = from_dict(DomainObservations, to_dict(replace(obs, helper=view)))
    assert classify(again) == verdict  # stored helper observations re-classify the same


def test_reasons_name_the_site_as_the_cause() -> None:
    verdict = classify(replace(own_certificate(), helper=helper(tls=F.TLS_UNKNOWN_AUTHORITY)))
    assert any("the site's own certificate" in r for r in verdict.reasons), verdict.reasons
    verdict = classify(replace(down_everywhere(), helper=helper(tcp=F.TIMEOUT)))
    assert any("could not connect either" in r for r in verdict.reasons), verdict.reasons


def test_unreachable_helper_is_said() -> None:
    verdict = classify(replace(down_everywhere(), helper=helper(failure=F.TIMEOUT)))
    assert verdict.status is S.BLOCKED
    assert any("No control helper answered" in r for r in verdict.notes), verdict


def test_own_redirect_seen_over_https_needs_no_helper() -> None:
    obs = site(
        dns=resolves(ADDR),
        endpoints=[
            https(ADDR, http=response(status=301, location=ELSEWHERE)),
            plain(ADDR, http=response(ADDR, 80, status=301, location=ELSEWHERE)),
        ],
    )
    verdict = classify(obs)
    assert verdict.status is S.ACCESSIBLE, verdict.reasons


@pytest.mark.parametrize(
    ("obs", "status", "blocking", "trigger"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE]
)
def test_existing_rows_unchanged_when_the_helper_sees_the_site(
    obs: DomainObservations, status: S, blocking: tuple[M, ...], trigger: T | None
) -> None:
    """A helper that reached the site changes no verdict of the table without one."""
    if status in (S.DOWN, S.INCONCLUSIVE):
        pytest.skip("the helper would see the site fail too")
    verdict = classify(replace(obs, helper=helper()))
    assert (verdict.status, verdict.blocking, verdict.trigger) == (status, blocking, trigger), (
        verdict.reasons
    )


def test_working_site_with_helper() -> None:
    obs = site(dns=resolves(ADDR), endpoints=endpoints(ADDR))
    assert classify(replace(obs, helper=helper())).status is S.ACCESSIBLE


def test_a_helper_failing_another_way_is_no_alibi() -> None:
    """Our certificate is forged while the helper's handshake was reset: still interception."""
    verdict = classify(replace(own_certificate(), helper=helper(tls=F.CONNECTION_RESET)))
    assert (verdict.status, verdict.blocking) == (S.BLOCKED, (M.TLS_INVALID_CERT,))
