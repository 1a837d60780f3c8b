"""The documented vocabularies must be the code's: a renamed failure or method
breaks every consumer of the data, so the docs are checked against the enums."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.failures import Failure
from probe.verdict import Method, Status, Trigger

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("doc", ["data-format.md", "methodology.md"])
def test_every_method_and_verdict_is_documented(doc: str) -> None:
    text = (DOCS / doc).read_text()
    missing = [v.value for v in (*Method, *Status, *Trigger) if f"{v.value}" not in text]
    assert not missing, f"{doc} does not mention {missing}"


def test_every_failure_name_is_documented() -> None:
    text = (DOCS / "data-format.md").read_text()
    assert not [f.value for f in Failure if f.value not in text]


def test_the_glossary_in_the_docs_is_probe_explains() -> None:
    """docs/methodology.md carries probe.glossary.markdown() verbatim: one source
    for `probe explain` and the docs, so neither can drift."""
    from probe.glossary import TERMS, markdown

    assert markdown() in (DOCS / "methodology.md").read_text(), (
        "regenerate the glossary section of docs/methodology.md from probe.glossary.markdown()"
    )
    assert set(TERMS) == {v.value for v in (*Status, *Method, *Trigger)}
    assert all(t.short and t.plain.endswith(".") for t in TERMS.values())


def test_every_config_section_and_key_the_docs_name_exists() -> None:
    """`[check]` for `[checks]` sent readers to a section the config refuses."""
    import re

    from probe.config import _SCHEMA

    texts = [p.read_text() for p in (*DOCS.glob("*.md"), DOCS.parent / "README.md")]
    named = {m for t in texts for m in re.findall(r"`\[([a-z_]+)\](?: ([a-z_]+))?", t)}
    assert named, "the pattern finds nothing any more"
    for section, key in named:
        assert section in _SCHEMA, f"docs name a config section [{section}] that does not exist"
        assert not key or key in _SCHEMA[section], f"docs name a config key [{section}] {key}"
    table = re.findall(
        r"^\| (?:`\[([a-z_]+)\]`)? \| ([^|]+) \|", (DOCS / "deploy.md").read_text(), re.M
    )
    section = ""
    for heading, keys in table:
        section = heading or section
        for key in re.findall(r"`([a-z_*]+)`", keys):
            pattern = re.compile(key.replace("*", "[a-z_]+") + "$")
            assert any(pattern.match(k) for k in _SCHEMA[section]), f"deploy.md: [{section}] {key}"
    assert section, "the config table of deploy.md was not found"
