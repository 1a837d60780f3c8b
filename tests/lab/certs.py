"""Certificates for the lab: one trusted CA for the real sites, one rogue CA for the censor.

The probe is given only the trusted CA (``--ca-bundle``), so a certificate
from the rogue CA is exactly what a TLS-intercepting middlebox looks like
from the vantage point: right name, untrusted issuer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class KeyPair:
    """A certificate chain and its key on disk, in the shape nginx and ssl want."""

    cert_chain: Path
    key: Path


@dataclass(frozen=True)
class LabPKI:
    ca_pem: Path  # the only CA the probe trusts (pass as --ca-bundle)
    server: KeyPair  # valid leaf for every lab name, used by the internet's web servers
    rogue_ca_pem: Path  # issuer of the interceptor's certificates; never trusted
    rogue: KeyPair  # rogue leaf for the same names, presented by the interceptor
    catch_all: Path | None = None  # NAME.crt and NAME.key per catch-all name, if any


def _write_leaf(ca: trustme.CA, names: Sequence[str], directory: Path, stem: str) -> KeyPair:
    leaf = ca.issue_cert(*names, common_name=names[0][:64])
    chain = directory / f"{stem}.crt"
    key = directory / f"{stem}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    return KeyPair(cert_chain=chain, key=key)


def create_pki(directory: Path, names: Sequence[str], catch_all: Sequence[str] = ()) -> LabPKI:
    """Generate fresh CAs and leaves for ``names`` into ``directory`` (one per lab run);
    with ``catch_all`` names (a test list), also one leaf per name in ``catch-all/``.

    One leaf per name, not one with every name as a SAN: a real site's certificate
    names a few hosts, and a 1,700-SAN certificate would make the probe's certificate
    parsing and JSON the dominant cost of a list run (measured: about half of it)."""
    ca = trustme.CA(organization_name="reachprobe lab CA")
    rogue = trustme.CA(organization_name="reachprobe lab rogue CA (untrusted)")
    ca_pem = directory / "ca.pem"
    rogue_pem = directory / "rogue-ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    rogue.cert_pem.write_to_path(str(rogue_pem))
    return LabPKI(
        ca_pem=ca_pem,
        server=_write_leaf(ca, names, directory, "server"),
        rogue_ca_pem=rogue_pem,
        rogue=_write_leaf(rogue, names, directory, "rogue"),
        catch_all=_write_leaves(ca, catch_all, directory / "catch-all") if catch_all else None,
    )


def _write_leaves(ca: trustme.CA, names: Sequence[str], directory: Path) -> Path:
    directory.mkdir()
    for name in names:
        _write_leaf(ca, (name,), directory, name)
    return directory
