"""The platform summary rule (docs/methodology.md, "Platform summary")."""

from __future__ import annotations

import pytest

from probe.summary import Result, platform_state, platform_summary
from probe.targets import load_platforms
from probe.verdict import Method, Status, Trigger, Verdict

X = load_platforms()["x"]
OK = Verdict(Status.ACCESSIBLE)
SNI = Verdict(Status.BLOCKED, (Method.TLS_RESET,), Trigger.SNI)
DNS = Verdict(Status.BLOCKED, (Method.DNS_NXDOMAIN,), Trigger.DNS)
DOWN = Verdict(Status.DOWN)
OFFLINE = Verdict(Status.OFFLINE)
UNCLEAR = Verdict(Status.INCONCLUSIVE)
HOST = Verdict(Status.BLOCKED, (Method.HTTP_RESET,), Trigger.HOST, https_ok=True)


def results(**verdicts: Verdict) -> list[Result]:
    """Every X endpoint accessible unless given (keys: domains with _ for .)."""
    given = {k.replace("_", "."): v for k, v in verdicts.items()}
    return [Result(d, given.get(d, OK)) for d in X.domains]


def test_x_profile_names_its_core_and_media() -> None:
    assert X.required == ("x.com", "api.x.com")
    assert X.media == ("abs.twimg.com", "pbs.twimg.com", "video.twimg.com")


@pytest.mark.parametrize(
    ("verdicts", "state"),
    [
        ({}, "REACHABLE from this network"),
        ({"x_com": SNI}, "BLOCKED from this network"),
        ({"api_x_com": DNS}, "BLOCKED from this network"),
        ({"pbs_twimg_com": SNI}, "PARTLY BLOCKED"),
        ({"t_co": SNI}, "PARTLY BLOCKED"),  # short links broken, the platform works
        (
            {"x_com": OFFLINE, "api_x_com": OFFLINE},
            "OFFLINE (this network reaches no control site)",
        ),
        ({"x_com": DOWN}, "UNCLEAR"),
        ({"api_x_com": UNCLEAR, "pbs_twimg_com": SNI}, "UNCLEAR"),
        ({"x_com": SNI, "api_x_com": UNCLEAR}, "BLOCKED from this network"),
        ({"x_com": HOST}, "PARTLY BLOCKED"),  # plaintext HTTP only: HTTPS works
        ({"x_com": HOST, "api_x_com": SNI}, "BLOCKED from this network"),
        ({"x_com": HOST, "api_x_com": DOWN}, "UNCLEAR"),
    ],
)
def test_state_rule(verdicts: dict[str, Verdict], state: str) -> None:
    assert platform_state(X, results(**verdicts)) == state


def test_the_issue_example_reads_as_asked() -> None:
    got = platform_summary(
        X,
        [
            Result("x.com", SNI),
            Result("twitter.com", OK, redirect="x.com"),
            Result("api.x.com", SNI),
            Result("t.co", OK),
            *(Result(d, OK) for d in X.media),
        ],
    )
    assert got == (
        "X (Twitter): BLOCKED from this network — x.com, api.x.com: SNI filtering (TLS reset); "
        "media hosts reachable; t.co reachable; twitter.com redirects to x.com"
    )


def test_blocked_media_says_what_users_lose_and_groups_by_method() -> None:
    got = platform_summary(X, results(abs_twimg_com=SNI, pbs_twimg_com=DNS, video_twimg_com=SNI))
    assert got == (
        "X (Twitter): PARTLY BLOCKED — abs.twimg.com, video.twimg.com: SNI filtering "
        "(TLS reset); pbs.twimg.com: DNS blocking (name reported as non-existent); images, "
        "video or scripts will not load; x.com, twitter.com, api.x.com, t.co reachable"
    )


def test_endpoints_not_checked_are_named_and_make_it_unclear() -> None:
    got = platform_summary(X, [Result("x.com", OK), Result("t.co", DOWN)])
    assert got.startswith("X (Twitter): UNCLEAR — ")
    assert "t.co: the site itself is down" in got
    assert got.endswith(
        "not checked: twitter.com, api.x.com, abs.twimg.com, pbs.twimg.com, video.twimg.com"
    )


def test_a_profile_without_core_counts_every_domain() -> None:
    from probe.targets import Platform

    plain = Platform("p", "P", ("a.example", "b.example"))
    assert platform_state(plain, [Result("a.example", OK), Result("b.example", SNI)]) == (
        "BLOCKED from this network"
    )


def test_plaintext_http_only_is_not_the_platform_blocked() -> None:
    """Lab scenario host_reset said "X (Twitter): BLOCKED from this network" under
    a "why" of "HTTPS to the site still works": people use X over HTTPS."""
    got = platform_summary(X, results(x_com=HOST, pbs_twimg_com=HOST))
    assert got == (
        "X (Twitter): PARTLY BLOCKED — x.com, pbs.twimg.com: Host filtering (web request cut) "
        "on plaintext HTTP only, HTTPS works; media hosts reachable; twitter.com, api.x.com, "
        "t.co reachable"
    )
