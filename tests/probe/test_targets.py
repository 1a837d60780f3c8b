from __future__ import annotations

from pathlib import Path

import pytest

from probe.errors import UsageError
from probe.targets import load_platforms, parse_target, platform_targets, read_test_list

SHARED_LISTS = Path(__file__).resolve().parents[3] / "shared" / "test-lists"


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("x.com", "x.com"),
        ("X.COM.", "x.com"),
        ("https://x.com/home?lang=en", "x.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("https://пример.рф/", "xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_parse_target_accepts(text: str, domain: str) -> None:
    target = parse_target(text)
    assert target.domain == domain
    assert target.input == text.strip()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("a..b", "empty label"),
        ("a" * 64 + ".com", "bad label"),
        ("x" * 250 + ".com", "longer than 253"),
        ("-a.com", "bad label"),
        ("a_b.com", "bad label"),
        ("localhost", "no dot"),
        ("1.2.3.4", "IP addresses"),
        ("ftp://x.com", "only http"),
        ("http://", "no host"),
        ("x.com/path", "domain name or an http(s) URL"),
        ("example.123", "numeric"),
        ("http://[::1", "invalid URL"),
    ],
)
def test_parse_target_rejects_with_one_line(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target(text)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("whole_url", [True, False])
def test_a_password_in_a_url_is_not_kept(whole_url: bool) -> None:
    """The probe never logs in; the input is stored, exported and uploaded."""
    target = parse_target("https://user:s3cret@X.com/", whole_url=whole_url)
    assert (target.domain, target.input) == ("x.com", "https://X.com/")
    target = parse_target("http://user@Twitter.com:80/?a=b@c", whole_url=False)
    assert (target.domain, target.input) == ("twitter.com", "http://Twitter.com:80/?a=b@c")
    with pytest.raises(UsageError) as info:
        parse_target("https://user:s3cret@x.com/path", whole_url=True)
    assert "s3cret" not in str(info.value)


def test_x_profile_is_the_reported_endpoint_set() -> None:
    domains = [t.domain for t in platform_targets("x")]
    assert domains == [
        "x.com",
        "twitter.com",
        "api.x.com",
        "t.co",
        "abs.twimg.com",
        "pbs.twimg.com",
        "video.twimg.com",
    ]
    assert {t.platform for t in platform_targets("X")} == {"x"}


def test_unknown_platform_lists_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown platform 'nope'.*x"):
        platform_targets("nope")


def test_user_platform_file_extends_and_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "mine.toml"
    extra.write_text(
        '[x]\nname = "X mirror"\ndomains = ["x.com"]\n[signal]\ndomains = ["signal.org"]\n'
    )
    monkeypatch.setenv("PROBE_PLATFORMS", str(extra))
    platforms = load_platforms()
    assert platforms["x"].domains == ("x.com",)
    assert platforms["signal"].domains == ("signal.org",)


def test_broken_platform_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "bad.toml"
    extra.write_text("[x\n")
    monkeypatch.setenv("PROBE_PLATFORMS", str(extra))
    with pytest.raises(UsageError, match="invalid platform file"):
        load_platforms()


def test_citizen_lab_lists_load() -> None:
    pk = read_test_list(str(SHARED_LISTS / "pk.csv"))
    assert len(pk) > 500
    assert len({t.domain for t in pk}) == len(pk)  # duplicates checked once


def test_test_list_skips_bad_rows_and_needs_a_header(tmp_path: Path) -> None:
    good = tmp_path / "l.csv"
    good.write_text(
        "url,category_code\nhttps://x.com/,GRP\nhttps://1.1.1.1/,ANON\n\nhttp://a..b/,X\n"
    )
    assert [t.domain for t in read_test_list(str(good))] == ["x.com"]
    bad = tmp_path / "b.csv"
    bad.write_text("domain\nx.com\n")
    with pytest.raises(UsageError, match="header with a 'url' column"):
        read_test_list(str(bad))
    with pytest.raises(UsageError, match="cannot read test list"):
        read_test_list(str(tmp_path / "missing.csv"))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"url\n\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_test_list(str(binary))
    empty = tmp_path / "empty.csv"
    for text in ("url,category_code\n", "url\nhttp://a..b/\n\n"):
        empty.write_text(text)
        with pytest.raises(UsageError, match=f"^test list {empty} has no URL to check$"):
            read_test_list(str(empty))


@pytest.mark.parametrize(
    ("domain", "platform"),
    [
        ("x.com", "x"),
        ("pbs.twimg.com", "x"),
        ("help.x.com", "x"),  # a subdomain of a profile domain
        ("www.youtube.com", "youtube"),
        ("notx.com", None),
        ("example.com", None),
    ],
)
def test_a_platform_domain_is_attributed_however_it_is_given(
    domain: str, platform: str | None, tmp_path: Path
) -> None:
    from probe.targets import attributed

    assert attributed([parse_target(domain)])[0].platform == platform
    assert attributed([parse_target(f"https://{domain}/")])[0].platform == platform
    listed = tmp_path / "list.csv"
    listed.write_text(f"url,category_code\nhttp://{domain}/,NEWS\n")
    assert read_test_list(str(listed))[0].platform == platform


def test_a_url_naming_a_path_or_port_is_refused_on_the_command_line() -> None:
    for url in ("https://x.com/elonmusk", "https://x.com:8443/", "http://x.com/?q=1"):
        with pytest.raises(UsageError, match=r"not paths or other ports; give x\.com instead"):
            parse_target(url, whole_url=True)
    for url in ("https://x.com/", "http://x.com", "https://x.com:443/", "http://x.com:80/"):
        assert parse_target(url, whole_url=True).domain == "x.com"


def test_a_list_says_which_urls_are_narrowed_to_their_domain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listed = tmp_path / "list.csv"
    listed.write_text("url\nhttps://a.example/page\nhttps://b.example/\n")
    assert [t.domain for t in read_test_list(str(listed))] == ["a.example", "b.example"]
    assert "1 URL(s) name a path or port" in caplog.text
