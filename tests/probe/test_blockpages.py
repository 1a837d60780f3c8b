"""Fingerprint loading (shipped + user files) and matching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probe.blockpages import (
    Fingerprint,
    load_fingerprints,
    match_dns,
    match_http,
    shipped_fingerprints,
)
from probe.errors import ConfigError
from tests.probe.builders import ADDR, response


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user fingerprints from the real home directory or environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PROBE_BLOCKPAGES", raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = """
[[fingerprint]]
id = "{id}"
kind = "body"
pattern = "{pattern}"
description = "user page"
"""


def test_shipped_fingerprints_load_and_cover_pakistan_and_the_lab() -> None:
    ids = {fp.id: fp for fp in shipped_fingerprints()}
    assert {"pk.pta.body", "pk.nayatel.safeweb", "pk.jazz.redirect", "lab.blockpage"} <= set(ids)
    assert ids["pk.nayatel.safeweb"].scope == "optin"
    assert ids["lab.blockpage"].pattern == "reachprobe-lab-blockpage"
    assert load_fingerprints() == shipped_fingerprints()


def test_body_match_is_case_insensitive() -> None:
    obs = response(ADDR, 80, body="<h1>Prohibited For Viewership From Within PAKISTAN</h1>")
    found = match_http(obs, shipped_fingerprints())
    assert found is not None and found.id == "pk.pta.body"


def test_location_matches_redirects_and_meta_refresh() -> None:
    fps = shipped_fingerprints()
    redirect = response(ADDR, 80, location="http://restrict.wateen.net/?u=x.com")
    found = match_http(redirect, fps)
    assert found is not None and found.id == "pk.wateen.restrict"
    refresh = '<meta http-equiv="refresh" content="0;url=http://redirect.wi-tribe.net.pk/alert/">'
    found = match_http(response(ADDR, 80, body=refresh), fps)
    assert found is not None and found.id == "pk.witribe.redirect"


def test_ordinary_pages_do_not_match() -> None:
    assert match_http(response(ADDR), shipped_fingerprints()) is None
    assert match_http(response(ADDR, location="https://x.com/"), shipped_fingerprints()) is None


def test_body_fingerprint_does_not_match_a_location() -> None:
    fp = Fingerprint("t", "body", "blocked.example", "test")
    assert match_http(response(ADDR, location="http://blocked.example/"), [fp]) is None


def test_dns_match_by_address_and_network() -> None:
    fps = shipped_fingerprints()
    found = match_dns(["1.2.3.4", "203.82.48.86"], fps)
    assert found is not None and found.id == "pk.nayatel.dns.86"
    assert match_dns(["203.82.48.84", "2001:db8::1", "not-an-ip"], fps) is None
    net = Fingerprint("n", "dns", "10.10.34.0/24", "Iran-style answer")
    assert match_dns(["10.10.34.36"], [net]) == net
    assert match_dns(["::ffff:10.10.34.36"], [net]) is None


def test_user_files_add_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = write(
        tmp_path / "config" / "reachprobe" / "blockpages.toml",
        ENTRY.format(id="pk.pta.body", pattern="replaced pattern"),
    )
    env_a = write(tmp_path / "a.toml", ENTRY.format(id="user.a", pattern="page a"))
    env_b = write(tmp_path / "b.toml", ENTRY.format(id="user.b", pattern="page b"))
    extra = write(tmp_path / "c.toml", ENTRY.format(id="user.b", pattern="page c"))
    monkeypatch.setenv("PROBE_BLOCKPAGES", os.pathsep.join([str(env_a), "", str(env_b)]))
    fps = {fp.id: fp for fp in load_fingerprints([extra])}
    assert xdg.is_file()
    assert fps["pk.pta.body"].pattern == "replaced pattern"
    assert fps["user.a"].pattern == "page a"
    assert fps["user.b"].pattern == "page c"  # extra files come last
    assert "lab.blockpage" in fps


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[fingerprint]\nid=", "not valid TOML"),
        ('[[fingerprint]]\nid = "a"\nkind = "body"\npattern = "p"\n', "'description' must be"),
        (ENTRY.format(id="a", pattern="p").replace('"body"', '"header"'), "unknown kind 'header'"),
        (ENTRY.format(id="a", pattern="p") + 'scope = "national"\n', "unknown scope 'national'"),
        (ENTRY.format(id="a", pattern="p") + "colour = 1\n", "unknown key 'colour'"),
        (ENTRY.format(id="a", pattern="p").replace('"body"', '"dns"'), "not an IP address"),
        (ENTRY.format(id="a", pattern="p") * 2, "entry 2: duplicate id 'a'"),
        ('[meta]\nname = "x"\n', "unknown top-level key 'meta'"),
    ],
)
def test_invalid_files_name_file_entry_and_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_fingerprints([path])
    message = str(info.value)
    assert str(path) in message and reason in message
    assert "\n" not in message


def test_invalid_entry_names_its_number_and_id(tmp_path: Path) -> None:
    text = ENTRY.format(id="ok", pattern="p") + ENTRY.format(id="broken", pattern="p").replace(
        '"body"', '"nope"'
    )
    with pytest.raises(ConfigError, match=r"entry 2 \(id 'broken'\): unknown kind"):
        load_fingerprints([write(tmp_path / "f.toml", text)])


def test_missing_file_from_the_environment_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_BLOCKPAGES", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"absent\.toml: cannot read"):
        load_fingerprints()
