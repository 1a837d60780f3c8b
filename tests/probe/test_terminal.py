"""Network text never reaches a terminal raw: the human table and JSON output."""

from __future__ import annotations

import json

import pytest

from probe.classify import classify
from probe.render import check_json, check_table
from probe.terminal import json_line, json_text, printable, printable_lines
from probe.verdict import Verdict
from tests.probe import builders

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil\u2028\x00\x7f\U000e0041"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2028", "\x00", "\x7f", "\U000e0041")


def hostile_measurement() -> tuple[object, Verdict]:
    page = builders.response(title="Blocked " + HOSTILE)
    endpoint = builders.https(issuer="Evil CA " + HOSTILE, http=page, tls_failure=None)
    obs = builders.site(dns=builders.resolves(builders.ADDR), endpoints=[endpoint])
    verdict = classify(obs)
    verdict = Verdict(
        status=verdict.status,
        blocking=verdict.blocking,
        trigger=verdict.trigger,
        blockpage="Censor " + HOSTILE,
        https_ok=verdict.https_ok,
        reasons=(*verdict.reasons, "a title: " + HOSTILE),
    )
    return obs, verdict


@pytest.mark.parametrize("colour", [False, True])
def test_the_human_table_escapes_every_control_character(colour: bool) -> None:
    obs, verdict = hostile_measurement()
    table = check_table(obs, verdict, colour=colour)  # type: ignore[arg-type]
    lines = table.split("\n")
    for ch in RAW:
        assert ch not in table.replace("\x1b[", "") if colour else ch not in table, repr(ch)
    assert "\\x1b]0;owned\\x07" in table and "\\u202eevil" in table
    assert any("Censor \\x1b" in line for line in lines[:1])
    if colour:  # our own colour codes survive, and only on the headline
        assert "\x1b[" in lines[0] and all("\x1b" not in line for line in lines[1:])


def test_json_output_is_valid_and_escaped() -> None:
    obs, verdict = hostile_measurement()
    record = check_json(obs, verdict)  # type: ignore[arg-type]
    for text in (json_text(record), json_text(record, indent=2), json_line(record)):
        assert not any(ch in text for ch in RAW)
        assert json.loads(text) == json.loads(json.dumps(record))  # the same data
    assert HOSTILE in json.loads(json_text(record))["blockpage"]
    assert json.loads(json_line(record)) == json.loads(json_text(record))


def test_json_line_is_json_text_without_spaces() -> None:
    """``probe check --json``'s line (msgspec's encoder): the same values, one line,
    every control escaped, DEL too."""
    value = {"k": ["tab\there", "nl\n", 1.5, 1e-05, 2**40, None, True], "é": {"x": "a\x7fb"}}
    assert json_line(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace(
        "1e-05", "0.00001"
    ).replace("\x7f", "\\u007f")
    assert json.loads(json_line({"k": "\U000e0041\x85\u2028"})) == {"k": "\U000e0041\x85\u2028"}
    assert "\u2028" not in json_line({"k": "\u2028"})


def test_helpers() -> None:
    assert printable("plain café") == "plain café"
    assert printable("a\nb\tc\x1b") == "a\\nb\\tc\\x1b"
    assert printable_lines("one\x07\ntwo") == "one\\x07\ntwo"
    assert json.loads(json_text({"k": "\U000e0041\x85"})) == {"k": "\U000e0041\x85"}


def test_json_text_of_ascii_escapes_del_and_keeps_the_rest() -> None:
    """ASCII text takes the short way (no ``isprintable`` pass): DEL, the one ASCII
    character JSON leaves raw that is not printable, is still escaped."""
    assert json_text({"k": "a\x7fb"}) == '{"k": "a\\u007fb"}'
    assert json_text({"k": "a\x7fb"}, indent=1) == '{\n "k": "a\\u007fb"\n}'
    plain = {"k": ["tab\there", "nl\n", 1.5, None]}
    assert json_text(plain) == json.dumps(plain)
    assert json_text(plain, indent=2) == json.dumps(plain, indent=2)
