"""What to check: domains typed by the user, platform profiles, and test lists.

Everything here validates its input and raises :class:`UsageError` with one
line naming the bad value, so the CLI can exit 2 without a traceback.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from probe import netaddr
from probe.errors import UsageError

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Target:
    """One domain to check, with what the user typed and the platform it belongs to."""

    domain: str  # IDNA (ASCII), lowercase, no trailing dot
    input: str
    platform: str | None = None


@dataclass(frozen=True)
class Platform:
    """A platform profile; ``core`` and ``media`` say which endpoints make it
    usable (the platform summary rule, docs/methodology.md)."""

    name: str  # short id, e.g. "x"
    title: str
    domains: tuple[str, ...]
    core: tuple[str, ...] = ()  # without these nothing works (empty: every domain)
    media: tuple[str, ...] = ()  # images, video, scripts: the platform is degraded without them

    @property
    def required(self) -> tuple[str, ...]:
        return self.core or self.domains


def normalize_domain(text: str) -> str:
    """Return the ASCII (IDNA) form of a hostname or raise UsageError."""
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise UsageError(f"invalid domain {text!r}: empty")
    if netaddr.is_ip(name):
        raise UsageError(
            f"invalid domain {text!r}: IP addresses are not targets; give a domain name"
        )
    if not name.isascii():
        import idna

        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise UsageError(f"invalid domain {text!r}: {exc}") from None
    name = name.lower()
    if len(name) > 253:
        raise UsageError(f"invalid domain {text[:40]!r}...: longer than 253 characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise UsageError(f"invalid domain {text!r}: not a fully qualified name (no dot)")
    for label in labels:
        if not label:
            raise UsageError(f"invalid domain {text!r}: empty label")
        if not _LABEL.match(label):
            raise UsageError(
                f"invalid domain {text!r}: bad label {label[:63]!r} "
                "(letters, digits and inner hyphens only, at most 63 characters)"
            )
    if labels[-1].isdigit():
        raise UsageError(f"invalid domain {text!r}: the top-level label is numeric")
    return name


def parse_target(text: str, platform: str | None = None, *, whole_url: bool = False) -> Target:
    """A domain or an http(s) URL, as typed on the command line or in a list.

    The probe measures a domain (its addresses on ports 443 and 80, the page
    at ``/``).  With ``whole_url`` a URL whose port or path would be dropped is
    refused with a line saying so, rather than measured as something else.
    """
    raw = text.strip()
    if "://" in raw:
        raw = text = _without_userinfo(raw)
        try:
            parts = urlsplit(raw)
            host = parts.hostname
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"invalid URL {text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UsageError(f"invalid URL {text!r}: only http:// and https:// URLs can be checked")
        if not host:
            raise UsageError(f"invalid URL {text!r}: no host")
        if whole_url and _dropped(parts.path, parts.query, port, scheme):
            raise UsageError(
                f"cannot measure {text!r} as given: the probe checks a domain on ports 443 and "
                f"80 and fetches /, not paths or other ports; give {host} instead"
            )
        return Target(normalize_domain(host), raw, platform)
    if any(c in raw for c in "/?#@ "):
        raise UsageError(f"invalid domain {text!r}: give a domain name or an http(s) URL")
    return Target(normalize_domain(raw), raw, platform)


def _without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the probe never logs in, and the input
    is stored, exported and uploaded (and said in error lines)."""
    scheme, _, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    return f"{scheme}://{rest[:end].rpartition('@')[2]}{rest[end:]}"


def _dropped(path: str, query: str, port: int | None, scheme: str) -> bool:
    """True when checking the URL's domain would not measure what the URL names."""
    default = 443 if scheme == "https" else 80
    return path not in ("", "/") or bool(query) or port not in (None, default)


def names_more(raw: str) -> bool:
    """True for a URL that names more than its domain (a path, a query, a port)."""
    if "://" not in raw:
        return False
    try:
        parts = urlsplit(raw)
        return _dropped(parts.path, parts.query, parts.port, parts.scheme.lower())
    except ValueError:
        return False


def platform_of(domain: str, platforms: dict[str, Platform] | None = None) -> str | None:
    """The platform profile a domain belongs to (the domain or a subdomain of
    one of its domains), first profile first; None for any other domain."""
    for platform in (load_platforms() if platforms is None else platforms).values():
        if any(domain == d or domain.endswith("." + d) for d in platform.domains):
            return platform.name
    return None


def attributed(targets: Iterable[Target]) -> tuple[Target, ...]:
    """``targets`` with every domain of a platform profile stored as that platform,
    however it was given (typed, a list, the daemon's ``domains``)."""
    platforms = load_platforms()
    return tuple(
        t if t.platform else Target(t.domain, t.input, platform_of(t.domain, platforms))
        for t in targets
    )


def load_platforms() -> dict[str, Platform]:
    """Shipped profiles, overridden by the user's platform files."""
    shipped = resources.files("probe").joinpath("data/platforms.toml").read_text("utf-8")
    platforms = _parse_platforms(shipped, "probe/data/platforms.toml")
    for path in _user_platform_files():
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read platform file {path}: {exc.strerror}") from None
        platforms.update(_parse_platforms(text, str(path)))
    return platforms


def _user_platform_files() -> list[Path]:
    files = [Path(p) for p in os.environ.get("PROBE_PLATFORMS", "").split(os.pathsep) if p]
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    default = config_home / "reachprobe" / "platforms.toml"
    if default.is_file():
        files.insert(0, default)
    return files


def _parse_platforms(text: str, source: str) -> dict[str, Platform]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid platform file {source}: {exc}") from None
    platforms: dict[str, Platform] = {}
    for key, table in data.items():
        domains = table.get("domains") if isinstance(table, dict) else None
        if not isinstance(domains, list) or not domains:
            raise UsageError(f"invalid platform file {source}: [{key}] needs a 'domains' list")
        title = table.get("name", key)
        names = tuple(normalize_domain(str(d)) for d in domains)
        roles = [_role(table, role, names, f"{source}: [{key}]") for role in ("core", "media")]
        platforms[key.lower()] = Platform(key.lower(), str(title), names, *roles)
    return platforms


def _role(
    table: dict[str, object], role: str, names: tuple[str, ...], where: str
) -> tuple[str, ...]:
    listed = table.get(role, [])
    if not isinstance(listed, list):
        raise UsageError(f"invalid platform file {where} '{role}' must be a list of domains")
    chosen = tuple(normalize_domain(str(d)) for d in listed)
    stray = [d for d in chosen if d not in names]
    if stray:
        raise UsageError(f"invalid platform file {where} '{role}' names {stray[0]}, not in domains")
    return chosen


def platform_targets(name: str) -> tuple[Target, ...]:
    platforms = load_platforms()
    platform = platforms.get(name.lower())
    if platform is None:
        known = ", ".join(sorted(platforms))
        raise UsageError(f"unknown platform {name!r} (known: {known})")
    return tuple(Target(d, d, platform.name) for d in platform.domains)


@dataclass(frozen=True)
class ListInput:
    """A test list's targets, and how many of its rows were skipped (each warned)."""

    targets: tuple[Target, ...]
    skipped: int


def read_test_list(path: str) -> tuple[Target, ...]:
    """Targets from a Citizen Lab test-list CSV (see :func:`load_test_list`)."""
    return load_test_list(path).targets


def load_test_list(path: str) -> ListInput:
    """Targets from a Citizen Lab test-list CSV (``url,category_code,...``).

    Rows whose URL is not checkable are skipped with a warning naming the
    line, so one odd entry does not stop a run over a whole list; duplicate
    domains are checked once.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read test list {path}: {reason}") from None
    except csv.Error as exc:
        raise UsageError(f"cannot read test list {path}: {exc}") from None
    if not rows or "url" not in [c.strip().lower() for c in rows[0]]:
        raise UsageError(
            f"invalid test list {path}: the first line must be a header with a 'url' column"
        )
    column = [c.strip().lower() for c in rows[0]].index("url")
    skipped: list[int] = []
    targets = attributed(_unique(_list_targets(rows[1:], column, path, skipped)))
    if not targets:  # not "give domains or URLs, --platform or --list": one was given
        raise UsageError(f"test list {path} has no URL to check")
    narrowed = sum(names_more(t.input) for t in targets)
    if narrowed:
        log.warning(
            "%s: %d URL(s) name a path or port; their domains are checked (ports 443 and 80, "
            "the page at /), not the path",
            path,
            narrowed,
        )
    return ListInput(targets, len(skipped))


def _list_targets(
    rows: Sequence[Sequence[str]], column: int, path: str, skipped: list[int]
) -> Iterable[Target]:
    for number, row in enumerate(rows, start=2):
        if not row or column >= len(row) or not row[column].strip():
            continue
        try:
            yield parse_target(row[column])
        except UsageError as exc:
            log.warning("%s:%d: skipped: %s", path, number, exc)
            skipped.append(number)


def _unique(targets: Iterable[Target]) -> tuple[Target, ...]:
    seen: dict[str, Target] = {}
    for target in targets:
        seen.setdefault(target.domain, target)
    return tuple(seen.values())
