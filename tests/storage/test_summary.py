"""The summary columns derived from observations (docs/data-format.md)."""

from __future__ import annotations

import dataclasses

from probe.failures import Failure
from probe.observations import DNSQuery, DomainObservations, TCPObservation
from storage.summary import first_failure, measurement_row
from tests.storage import factories as F


def _with_dns_failure(obs: DomainObservations, failure: Failure) -> DomainObservations:
    dns = tuple(
        dataclasses.replace(q, failure=failure, replies=()) if q.origin == "vantage" else q
        for q in obs.dns
    )
    return dataclasses.replace(obs, dns=dns, endpoints=())


def test_first_failure_names_the_earliest_phase_that_failed_everywhere() -> None:
    assert first_failure(F.accessible()) is None
    assert first_failure(F.blocked_sni()) == "tls:connection_reset"
    assert first_failure(_with_dns_failure(F.accessible(), Failure.DNS_NXDOMAIN)) == (
        "dns:dns_nxdomain"
    )


def test_an_empty_aaaa_answer_is_not_a_dns_failure() -> None:
    obs = F.blocked_sni()
    aaaa: list[DNSQuery] = [q for q in obs.dns if q.qtype == "AAAA"]
    assert aaaa and aaaa[0].failure == Failure.DNS_NO_ANSWER
    assert not first_failure(obs).startswith("dns")  # type: ignore[union-attr]


def test_tcp_failure_on_every_address() -> None:
    obs = F.accessible()
    endpoint = obs.endpoints[0]
    dead = dataclasses.replace(
        endpoint,
        tcp=TCPObservation(endpoint.address, 443, 13.0, 5000.0, Failure.TIMEOUT),
        tls=None,
        http=None,
    )
    assert first_failure(dataclasses.replace(obs, endpoints=(dead,))) == "tcp:timeout"


def test_only_unusable_addresses() -> None:
    obs = F.blocked_sni()
    skipped = tuple(e for e in obs.endpoints if e.skipped)
    assert first_failure(dataclasses.replace(obs, endpoints=skipped)) == "tcp:address_unusable"


def test_row_summary_fields() -> None:
    row = measurement_row("id", F.VANTAGE, F.blocked_sni(), F.BLOCKED)
    # The stub-resolver view: the first reply (the injected one) only.
    assert row.dns_answers == ("198.51.100.7",)
    assert row.tls_failures == ("connection_reset",)
    assert row.http_failures == ("connection_reset",)
    # HTTPS gave no response, so the plaintext blockpage is the one shown.
    assert (row.http_status, row.http_title) == (200, "Site blocked")
    assert row.tcp_ms == 40.5  # median of 41.0 and 40.0
    assert row.tls_ms is None  # no successful target-SNI handshake
    assert row.http_ms == 55.0
    assert row.resolver == "udp://192.0.2.53:53"
