"""probe.checks.url: the URL handling of the HTTP check (parse, join, print)."""

from __future__ import annotations

import pytest

from probe.checks.url import URL


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("https://x.com/", "https://x.com/"),
        ("HTTPS://X.COM", "https://x.com/"),
        ("http://x.com:80/a?b=c", "http://x.com/a?b=c"),
        ("https://x.com:8443/", "https://x.com:8443/"),
        ("http://[2001:DB8::1]:8080/p", "http://[2001:db8::1]:8080/p"),
        ("https://bücher.example/ä b?q=ü", "https://xn--bcher-kva.example/%C3%A4%20b?q=%C3%BC"),
        ("https://x.com/a%20b?x=%2F", "https://x.com/a%20b?x=%2F"),
        ("https://x.com/page#frag", "https://x.com/page"),
    ],
)
def test_parse_normalises(text: str, printed: str) -> None:
    url = URL.parse(text)
    assert url is not None and str(url) == printed


@pytest.mark.parametrize(
    "text", ["ftp://x.com/", "/relative", "https://", "http://x.com:99999/", "http://[::1/", ""]
)
def test_parse_rejects(text: str) -> None:
    assert URL.parse(text) is None


def test_authority_and_target() -> None:
    url = URL.parse("http://[::1]:8080/p?q")
    assert url is not None
    assert (url.host, url.port, url.authority, url.target) == ("::1", 8080, "[::1]:8080", "/p?q")


@pytest.mark.parametrize(
    ("location", "joined"),
    [
        ("/other", "https://x.com/other"),
        ("next?a=1", "https://x.com/dir/next?a=1"),
        ("//cdn.example/x", "https://cdn.example/x"),
        ("http://Blockpage.Test/notice", "http://blockpage.test/notice"),
        ("https://x.com:443/", "https://x.com/"),
    ],
)
def test_join(location: str, joined: str) -> None:
    base = URL.parse("https://x.com/dir/page")
    assert base is not None
    assert str(base.join(location)) == joined


def test_join_to_elsewhere_is_none() -> None:
    base = URL.parse("https://x.com/")
    assert base is not None
    assert base.join("mailto:someone@x.com") is None
    assert base.join("http://[bad/") is None
