"""Blockpage fingerprints: known censor pages, redirects and DNS answers.

A fingerprint turns "the response looks odd" into "this is ISP X's
blockpage", which is the strongest evidence of blocking the probe can get.
Fingerprints are data (TOML), shipped in ``probe/data/blockpages.toml`` and
extendable by users without a release, because censors change their pages
more often than we release.

File format: an array of tables ``[[fingerprint]]`` with the keys ``id``,
``kind`` (``body``, ``location`` or ``dns``), ``pattern``, ``description``
and optionally ``scope`` (``state``, ``isp`` or ``optin``).  ``body`` and
``location`` patterns are case-insensitive substrings; a ``location`` pattern
is a URL the censor sends the browser to, so it is matched against redirect
``Location`` values *and* the body (ISPs also redirect by meta refresh,
iframe or script).  A ``dns`` pattern is an IP address or network.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from probe.errors import ConfigError
from probe.netaddr import parse
from probe.observations import HTTPObservation

Kind = Literal["body", "location", "dns"]
Scope = Literal["state", "isp", "optin"]

_KINDS: tuple[Kind, ...] = ("body", "location", "dns")
_SCOPES: tuple[Scope, ...] = ("state", "isp", "optin")
_KEYS = frozenset({"id", "kind", "pattern", "description", "scope"})

ENV_VAR = "PROBE_BLOCKPAGES"


@dataclass(frozen=True)
class Fingerprint:
    """One recognisable sign of a censor.

    ``scope`` says who filters: ``state`` (a national order's page), ``isp``
    (an ISP's own page or resolver implementing blocking) or ``optin`` (a
    filter the subscriber chose, e.g. Nayatel Safeweb: not state censorship).
    """

    id: str
    kind: Kind
    pattern: str
    description: str
    scope: Scope = "state"


def load_fingerprints(extra: Sequence[str | Path] = ()) -> tuple[Fingerprint, ...]:
    """The shipped fingerprints plus the user's, in this order: shipped,
    ``$XDG_CONFIG_HOME/reachprobe/blockpages.toml`` (if present), the files in
    ``$PROBE_BLOCKPAGES`` (``os.pathsep``-separated), then ``extra``.

    A later entry with an existing ``id`` replaces the earlier one (so users
    can correct a shipped fingerprint).  Raises :class:`ConfigError` for a
    missing, unreadable or invalid file.
    """
    merged: dict[str, Fingerprint] = {fp.id: fp for fp in shipped_fingerprints()}
    for path in _user_files(extra):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"blockpages file {path}: cannot read: {exc.strerror}") from None
        for fp in _parse(data, str(path)):
            merged[fp.id] = fp
    return tuple(merged.values())


@functools.cache
def shipped_fingerprints() -> tuple[Fingerprint, ...]:
    """Only the fingerprints shipped with the package (cached: they never change)."""
    data = resources.files("probe").joinpath("data", "blockpages.toml").read_bytes()
    return _parse(data, "probe/data/blockpages.toml")


def match_http(obs: HTTPObservation, fingerprints: Sequence[Fingerprint]) -> Fingerprint | None:
    """The first fingerprint found in the response's body or redirect locations."""
    body = obs.body.casefold()
    locations: list[str] | None = None  # made only if a location pattern is not in the body
    for fp in fingerprints:
        if fp.kind == "dns":
            continue
        pattern = fp.pattern.casefold()
        if pattern in body:  # a body pattern, or a location one written into the page
            return fp
        if fp.kind == "location":
            if locations is None:
                locations = [loc.casefold() for loc in _locations(obs)]
            if any(pattern in x for x in locations):
                return fp
    return None


def match_dns(addresses: Iterable[str], fingerprints: Sequence[Fingerprint]) -> Fingerprint | None:
    """The first ``dns`` fingerprint whose address or network holds one of ``addresses``."""
    ips = [ip for ip in (parse(a) for a in addresses) if ip is not None]
    for fp in fingerprints:
        if fp.kind != "dns":
            continue
        network = _network(fp.pattern)
        if any(ip.version == network.version and ip in network for ip in ips):
            return fp
    return None


def _locations(obs: HTTPObservation) -> list[str]:
    found = [r.location for r in obs.redirects]
    found += [value for name, value in obs.headers if name.lower() == "location"]
    return found


@functools.lru_cache(maxsize=256)
def _network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(pattern.strip("[]"), strict=False)


def _user_files(extra: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    xdg = Path(config_home) / "reachprobe" / "blockpages.toml"
    if xdg.is_file():
        files.append(xdg)
    files += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    files += [Path(p) for p in extra]
    return files


def _parse(data: bytes, source: str) -> tuple[Fingerprint, ...]:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"blockpages file {source}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"fingerprint"}
    if unknown:
        raise ConfigError(
            f"blockpages file {source}: unknown top-level key {sorted(unknown)[0]!r} "
            "(expected [[fingerprint]] tables)"
        )
    entries = doc.get("fingerprint", [])
    if not isinstance(entries, list):
        raise ConfigError(f"blockpages file {source}: 'fingerprint' must be [[fingerprint]] tables")
    result: list[Fingerprint] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        fp = _entry(entry, f"blockpages file {source}, entry {number}")
        if fp.id in seen:
            raise ConfigError(f"blockpages file {source}, entry {number}: duplicate id {fp.id!r}")
        seen.add(fp.id)
        result.append(fp)
    return tuple(result)


def _entry(entry: Any, where: str) -> Fingerprint:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    if isinstance(entry.get("id"), str):
        where = f"{where} (id {entry['id']!r})"
    unknown = set(entry) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    for key in ("id", "kind", "pattern", "description"):
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: {key!r} must be a non-empty string")
    kind, scope = entry["kind"], entry.get("scope", "state")
    if kind not in _KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r} (expected body, location or dns)")
    if scope not in _SCOPES:
        raise ConfigError(f"{where}: unknown scope {scope!r} (expected state, isp or optin)")
    if kind == "dns":
        try:
            _network(entry["pattern"])
        except ValueError:
            raise ConfigError(
                f"{where}: dns pattern {entry['pattern']!r} is not an IP address or network"
            ) from None
    return Fingerprint(
        id=entry["id"],
        kind=cast(Kind, kind),
        pattern=entry["pattern"],
        description=entry["description"],
        scope=cast(Scope, scope),
    )
