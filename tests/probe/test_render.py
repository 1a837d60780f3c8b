"""The human table and the probe.check/1 JSON built from one measurement."""

from __future__ import annotations

import json

from probe.classify import classify
from probe.render import SCHEMA, check_json, check_table
from tests.probe.builders import working


def test_table_in_colour_and_plain() -> None:
    obs = working()
    verdict = classify(obs)
    plain = check_table(obs, verdict, colour=False)
    coloured = check_table(obs, verdict, colour=True)
    assert plain.splitlines()[0].startswith(f"{obs.domain}  ACCESSIBLE")
    assert "\x1b[" in coloured and "\x1b[" not in plain
    assert "tls control-sni" in plain or "tls " in plain


def test_json_has_the_documented_top_level_keys() -> None:
    obs = working()
    line = json.dumps(check_json(obs, classify(obs)))
    data = json.loads(line)
    assert data["schema"] == SCHEMA == "probe.check/1"
    for key in (
        "domain",
        "verdict",
        "blocking",
        "trigger",
        "started_at",
        "duration_ms",
        "dns",
        "endpoints",
        "http",
        "control",
    ):
        assert key in data
    assert set(data["dns"]) == {"vantage", "control"}
    assert all("ok" in e["tcp"] for e in data["endpoints"] if e["tcp"])
    assert all("body" not in e["http"] for e in data["endpoints"] if e["http"])  # kept in storage


def test_a_page_title_decoding_to_a_lone_surrogate_is_written_escaped() -> None:
    """A UTF-7 page can decode to a lone surrogate, which is no UTF-8 (msgspec
    refuses it): the --json line still comes, with the escape ``json`` writes,
    instead of the run ending in an internal error and the domain unstored."""
    import asyncio
    import time

    from probe.checks import http
    from probe.observations import HTTPObservation
    from probe.render import _step
    from probe.terminal import json_line

    page = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-7\r\n"
        b"Content-Length: 20\r\n\r\n<title>+2D0-</title>"
    )

    async def fetch() -> HTTPObservation:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(page)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await http.fetch(
                "http://example.test/",
                address="127.0.0.1",
                ports={"http": port},
                timeout=5,
                t0=time.monotonic(),
                allow_loopback=True,
            )

    obs = asyncio.run(fetch())
    assert obs.title == "\ud83d"
    line = json_line(_step(obs))
    assert '"title":"\\ud83d"' in line and "\n" not in line
    assert json.loads(line)["title"] == "\ud83d"
