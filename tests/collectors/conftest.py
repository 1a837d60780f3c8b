"""Collector fixtures: the storage backends (SQLite file, throwaway PostgreSQL),
and a collector serving HTTPS with a CA of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.collectors.collectorproc import CollectorProcess
from tests.storage.conftest import db_url, pg_server, pg_url

__all__ = ["db_url", "pg_server", "pg_url"]


@dataclass(frozen=True)
class HttpsCollector:
    """A collector serving HTTPS with a certificate from a CA of its own (``ca``: its PEM)."""

    proc: CollectorProcess
    ca: Path


def own_ca_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1 from a new CA (trustme): its chain, key and CA PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, bundle = directory / "chain.pem", directory / "key.pem", directory / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    ca.cert_pem.write_to_path(str(bundle))
    return chain, key, bundle


@pytest.fixture
def https_collector(tmp_path: Path, pg_url: str) -> Iterator[HttpsCollector]:
    chain, key, bundle = own_ca_certificate(tmp_path)
    tls = ("--tls-cert", str(chain), "--tls-key", str(key))
    served = CollectorProcess(pg_url, tmp_path / "tls.log", extra=tls).start()
    try:
        yield HttpsCollector(served, bundle)
    finally:
        served.stop()
