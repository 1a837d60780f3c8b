"""The daemon's configuration: a commented TOML file plus environment overrides.

``probe init`` writes :data:`EXAMPLE_RESOURCE`; ``probe run`` and ``probe
config check`` read it with :func:`load_config`.  Every problem is reported as
one :class:`ConfigError` line naming the file, the line and the key
(``CONFIG:LINE: key 'x.y': reason``), because an operator editing a file on a
Pi over SSH needs to know where to look, not a traceback.

Unknown keys are errors rather than ignored: a typo such as ``intervall``
would otherwise silently leave the default in force.

Containers configure through the environment: ``REACHPROBE_<SECTION>_<KEY>``
(e.g. ``REACHPROBE_STORAGE_URL``, ``REACHPROBE_TARGETS_DOMAINS=a.com,b.org``)
overrides the file's value; lists are comma-separated.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import ConfigError, UsageError
from probe.targets import Target

if TYPE_CHECKING:
    from probe.check import CheckOptions
    from storage.records import Vantage

EXAMPLE_RESOURCE = "data/config.example.toml"
ENV_PREFIX = "REACHPROBE_"
DEFAULT_PLATFORMS: tuple[str, ...] = ("x",)


@dataclass(frozen=True)
class VantageConfig:
    name: str
    country: str | None = None
    asn: int | None = None
    network: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class TargetsConfig:
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleConfig:
    interval_s: float = 15 * 60
    jitter_s: float = 60.0  # up to this much is added to every run time
    shutdown_grace_s: float = 8.0  # fits inside `docker stop`'s default 10 s


@dataclass(frozen=True)
class ChecksConfig:
    timeout_s: float = 10.0
    resolver: str | None = None  # None: the system resolver
    control_resolvers: tuple[str, ...] | None = None  # None: probe.check's defaults
    control_domains: tuple[str, ...] | None = None
    control_sni: str | None = None
    ca_bundle: str | None = None
    concurrency: int = 2  # targets checked at the same time by the daemon
    helpers: tuple[str, ...] = ()  # control helper URLs (key `helper`), tried in order


@dataclass(frozen=True)
class StorageConfig:
    url: str | None = None  # None: the storage package's default database
    retention_days: int = 0  # 0: keep forever
    busy_timeout_s: float = 30.0  # how long a save waits for another writer (SQLite)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None  # "HOST:PORT"; None: no listener

    @property
    def address(self) -> tuple[str, int] | None:
        if self.listen is None:
            return None
        host, port = _split_listen(self.listen)
        return host, port


@dataclass(frozen=True)
class UploadConfig:
    url: str | None = None  # the collector; None: no uploads
    token: str | None = None  # this vantage's upload token (REACHPROBE_UPLOAD_TOKEN)
    batch: int = 500  # measurements per request
    ca_bundle: str | None = None  # CAs trusted besides the usual ones (a collector's own CA)

    def __repr__(self) -> str:  # the token must not end up in a log or traceback
        return f"UploadConfig(url={self.url!r}, token={'***' if self.token else None}, ...)"


@dataclass(frozen=True)
class TraceConfig:
    """``probe trace`` run by the daemon when a check finds a target blocked."""

    when_blocked: bool = False  # needs raw sockets (root or CAP_NET_RAW) and scapy
    min_interval_s: float = 24 * 3600  # at most one trace per target this often
    max_ttl: int = 30
    wait_s: float = 1.0


@dataclass(frozen=True)
class Config:
    vantage: VantageConfig
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    source: str = "<config>"  # the file it was read from, for messages


# ------------------------------------------------------------------ loading


def example_config() -> str:
    """The commented template that ``probe init`` writes."""
    return resources.files("probe").joinpath(EXAMPLE_RESOURCE).read_text("utf-8")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, override from ``env`` (default: os.environ) and validate a config file."""
    source = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        hint = f"create one with `probe init {source}`"
        raise ConfigError(f"{source}: no such file ({hint})") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{source}: cannot read: {reason}") from None
    return parse_config(text, source, os.environ if env is None else env)


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Parse and validate config text; see the module docstring for the error format."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_message(source, str(exc))) from None
    locate = _Locator(source, text)
    _reject_unknown(data, locate)
    values = {section: dict(table) for section, table in data.items()}
    for key, value in sorted((env or {}).items()):
        _apply_env(values, key, value)
    return _build(values, locate)


def _syntax_message(source: str, message: str) -> str:
    found = re.search(r"\(at line (\d+), column (\d+)\)", message)
    reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
    if found:
        return f"{source}:{found.group(1)}: syntax error: {reason} (column {found.group(2)})"
    return f"{source}: syntax error: {reason}"


class _Locator:
    """Finds a key's line by scanning the text: tomllib keeps no positions."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def line(self, section: str, key: str | None) -> int | None:
        current = None
        header_line = None
        for number, raw in enumerate(self.lines, start=1):
            stripped = raw.strip()
            header = re.match(r"^\[\s*([A-Za-z0-9_-]+)\s*\]", stripped)
            if header:
                current = header.group(1)
                if current == section:
                    header_line = number
                continue
            if (
                current == section
                and key is not None
                and re.match(rf"^{re.escape(key)}\s*=", stripped)
            ):
                return number
        return header_line

    def error(self, dotted: str, reason: str, *, env: str | None = None) -> ConfigError:
        if env is not None:
            return ConfigError(f"environment {env}: key '{dotted}': {reason}")
        section, _, key = dotted.partition(".")
        number = self.line(section, key or None)
        where = f"{self.source}:{number}" if number else self.source
        return ConfigError(f"{where}: key '{dotted}': {reason}")


# ------------------------------------------------------------- the schema

# section -> key -> (parser, dataclass field).  Parsers take the raw TOML
# value (or an environment string) and return the field value or raise
# ValueError with the reason.
_Parser = Callable[[Any], Any]


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_kind(value)}")
    return value.strip() or None


def _required_text(value: Any) -> str:
    text = _text(value)
    if text is None:
        raise ValueError("must not be empty")
    return text


VANTAGE_NAME_MAX = 100  # what a collector registers (storage.registry)


def vantage_name(value: str) -> str:
    """``value`` stripped, or ValueError: every table, log line, CSV row and
    upload carries the name, so a line break or control character in it would
    split rows and lines wherever it is shown."""
    name = value.strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > VANTAGE_NAME_MAX:
        raise ValueError(f"longer than {VANTAGE_NAME_MAX} characters")
    if not name.isprintable():
        raise ValueError("holds a line break, tab or other control character")
    return name


def network_name(value: str | None) -> str | None:
    """``value`` stripped (None if empty), or ValueError: the ISP's name is shown
    beside the vantage's in tables, log lines and the dashboard, which a line
    break would split as it would a vantage name."""
    if value is None or not value.strip():
        return None
    return vantage_name(value)


def _text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # from the environment
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {_kind(value)}")
    return tuple(v.strip() for v in value if v.strip())


def _optional_text_list(value: Any) -> tuple[str, ...] | None:
    items = _text_list(value)
    return items or None


def _integer(value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, str):  # from the environment
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_kind(value)}")
    if value < minimum:
        raise ValueError(f"must be at least {minimum}")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")  # from the environment
    raise ValueError(f"expected true or false, got {_kind(value)}")


def _asn(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().upper().startswith("AS"):
        value = value.strip()[2:]
    number = _integer(value)
    if number > 4_294_967_295:
        raise ValueError("not a 32-bit AS number")
    return number or None


def _country(value: Any) -> str | None:
    text = _text(value)
    if text is not None and not re.fullmatch(r"[A-Za-z]{2}", text):
        raise ValueError(f"expected a two-letter ISO 3166-1 code such as 'PK', got {text!r}")
    return text.upper() if text else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string such as ``"15m"``, ``"1h30m"``, ``"90s"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {_kind(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"expected a duration such as '15m', '90s' or '1h', got {value!r}"
                ) from None
            seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    else:
        raise ValueError(f"expected a duration such as '15m', got {_kind(value)}")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _float(value: Any) -> float:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_kind(value)}")
    return float(value)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


_SCHEMA: dict[str, dict[str, tuple[_Parser, str]]] = {
    "vantage": {
        "name": (lambda v: vantage_name(_required_text(v)), "name"),
        "country": (_country, "country"),
        "asn": (_asn, "asn"),
        "network": (lambda v: network_name(_text(v)), "network"),
        "notes": (_text, "notes"),
    },
    "targets": {
        "platforms": (_text_list, "platforms"),
        "domains": (_text_list, "domains"),
    },
    "schedule": {
        "interval": (parse_duration, "interval_s"),
        "jitter": (parse_duration, "jitter_s"),
        "shutdown_grace": (parse_duration, "shutdown_grace_s"),
    },
    "checks": {
        "timeout": (parse_duration, "timeout_s"),
        "resolver": (_text, "resolver"),
        "control_resolvers": (_optional_text_list, "control_resolvers"),
        "control_domains": (_optional_text_list, "control_domains"),
        "control_sni": (_text, "control_sni"),
        "ca_bundle": (_text, "ca_bundle"),
        "concurrency": (lambda v: _integer(v, minimum=1), "concurrency"),
        "helper": (_text_list, "helpers"),
    },
    "storage": {
        "url": (_text, "url"),
        "retention_days": (_integer, "retention_days"),
        "busy_timeout": (parse_duration, "busy_timeout_s"),
    },
    "metrics": {
        "listen": (_text, "listen"),
    },
    "upload": {
        "url": (_text, "url"),
        "token": (_text, "token"),
        "batch": (lambda v: _integer(v, minimum=1), "batch"),
        "ca_bundle": (_text, "ca_bundle"),
    },
    "trace": {
        "when_blocked": (_boolean, "when_blocked"),
        "min_interval": (parse_duration, "min_interval_s"),
        "max_ttl": (lambda v: _integer(v, minimum=1), "max_ttl"),
        "wait": (parse_duration, "wait_s"),
    },
}
_SECTIONS: dict[str, type[Any]] = {
    "vantage": VantageConfig,
    "targets": TargetsConfig,
    "schedule": ScheduleConfig,
    "checks": ChecksConfig,
    "storage": StorageConfig,
    "metrics": MetricsConfig,
    "upload": UploadConfig,
    "trace": TraceConfig,
}


def env_names() -> tuple[str, ...]:
    """Every environment variable that overrides a key, for the docs and `--help`."""
    return tuple(
        f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
        for section, keys in _SCHEMA.items()
        for key in keys
    )


# Variables read elsewhere (not config keys): anything else with our
# prefixes is most likely a typo that would otherwise be ignored silently.
OTHER_ENV = frozenset(
    {"REACHPROBE_CONFIG", "REACHPROBE_ISOLATED", "PROBE_DB", "PROBE_VANTAGE", "PROBE_PLATFORMS",
     "PROBE_BLOCKPAGES", "PROBE_HELPER_TOKEN", "PROBE_TEST_PG_URL"}
)  # fmt: skip


def upload_token_missing(config: Config) -> str | None:
    """Why the daemon cannot upload, if it has a collector but no token (``probe
    run`` refuses to start; ``probe config check`` warns, for its shell may lack
    the unit's environment)."""
    if config.upload.url is not None and config.upload.token is None:
        return (
            "key 'upload.token': required with upload.url (in the file or as "
            "REACHPROBE_UPLOAD_TOKEN in the daemon's environment)"
        )
    return None


def config_warnings(config: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """What is valid but probably not meant: typo'd variables, metrics open to all,
    a URL whose path or port is not what gets measured (probe check refuses those)."""
    known = OTHER_ENV | set(env_names())
    names = os.environ if env is None else env
    found = [
        f"environment variable {n} is not a setting (a typo?); it is ignored"
        for n in sorted(names)
        if n.startswith((ENV_PREFIX, "PROBE_")) and n not in known
    ]
    from probe.targets import names_more, parse_target

    found += [
        f"targets.domains: {text!r} names a path or port; its domain "
        f"{parse_target(text).domain} is checked (ports 443 and 80, the page at /)"
        for text in config.targets.domains
        if names_more(text)
    ]
    missing = upload_token_missing(config)
    if missing is not None:
        found.append(f"{missing}; not set here")
    address = config.metrics.address
    if address is not None and address[0] in ("0.0.0.0", "::"):
        found.append(
            f"metrics.listen {config.metrics.listen!r} serves metrics on every interface "
            f"(anyone who reaches this machine can read them); 127.0.0.1:{address[1]} keeps "
            "them local"
        )
    return found


def _reject_unknown(data: dict[str, Any], locate: _Locator) -> None:
    for section, table in data.items():
        if section not in _SCHEMA:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            raise locate.error(section, f"unknown section (known: {known})")
        if not isinstance(table, dict):
            raise locate.error(section, "expected a [table]")
        for key in table:
            if key not in _SCHEMA[section]:
                known = ", ".join(_SCHEMA[section])
                raise locate.error(f"{section}.{key}", f"unknown key (known: {known})")


_ENV_VALUE = "__env__"


def _apply_env(values: dict[str, dict[str, Any]], name: str, value: str) -> None:
    if not name.startswith(ENV_PREFIX):
        return
    rest = name[len(ENV_PREFIX) :].lower()
    for section, keys in _SCHEMA.items():
        for key in keys:
            if rest == f"{section}_{key}":
                values.setdefault(section, {})[key] = (_ENV_VALUE, name, value)


def _build(values: dict[str, dict[str, Any]], locate: _Locator) -> Config:
    sections: dict[str, Any] = {}
    for section, schema in _SCHEMA.items():
        kwargs: dict[str, Any] = {}
        for key, raw in values.get(section, {}).items():
            parser, attribute = schema[key]
            env = None
            if isinstance(raw, tuple) and len(raw) == 3 and raw[0] == _ENV_VALUE:
                _, env, raw = raw
            try:
                kwargs[attribute] = parser(raw)
            except ValueError as exc:
                raise locate.error(f"{section}.{key}", str(exc), env=env) from None
        if section == "vantage" and "name" not in kwargs:
            raise locate.error("vantage.name", "required: a short name for this probe")
        sections[section] = _SECTIONS[section](**kwargs)
    config = Config(**sections, source=locate.source)
    _validate(config, values, locate)
    return config


def _validate(config: Config, values: dict[str, dict[str, Any]], locate: _Locator) -> None:
    """Checks that need more than one value's type: ranges, names, resolvers."""

    def fail(dotted: str, reason: str) -> ConfigError:
        section, _, key = dotted.partition(".")
        raw = values.get(section, {}).get(key)
        env = raw[1] if isinstance(raw, tuple) and len(raw) == 3 and raw[0] == _ENV_VALUE else None
        return locate.error(dotted, reason, env=env)

    schedule = config.schedule
    if schedule.interval_s < 1:
        raise fail("schedule.interval", "must be at least 1 second")
    if schedule.jitter_s >= schedule.interval_s:
        raise fail("schedule.jitter", "must be shorter than schedule.interval")
    if not 0 < config.storage.busy_timeout_s <= 600:
        raise fail("storage.busy_timeout", "must be between 0 and 600 seconds")
    try:
        from storage.database import resolve_url

        resolve_url(config.storage.url or None)
    except UsageError as exc:
        raise fail("storage.url", str(exc)) from None
    if not 0 < config.checks.timeout_s <= 600:
        raise fail("checks.timeout", "must be between 0 and 600 seconds")
    if not config.targets.platforms and not config.targets.domains:
        raise fail("targets.platforms", "no targets: give platforms and/or domains")
    try:
        resolve_targets(config)
    except UsageError as exc:
        key = "targets.platforms" if "platform" in str(exc) else "targets.domains"
        raise fail(key, str(exc)) from None

    from probe.checks.dns import parse_resolver
    from probe.targets import normalize_domain

    checks = config.checks
    for dotted, items, parse in (
        ("checks.resolver", tuple(filter(None, [checks.resolver])), parse_resolver),
        ("checks.control_resolvers", checks.control_resolvers or (), parse_resolver),
        ("checks.control_domains", checks.control_domains or (), normalize_domain),
        ("checks.control_sni", tuple(filter(None, [checks.control_sni])), normalize_domain),
    ):
        for item in items:
            try:
                parse(item)
            except UsageError as exc:
                raise fail(dotted, str(exc)) from None
    from probe.helper.client import check_url

    for url in checks.helpers:
        try:
            check_url(url)
        except UsageError as exc:
            raise fail("checks.helper", str(exc)) from None
    if checks.ca_bundle is not None and not Path(checks.ca_bundle).is_file():
        raise fail("checks.ca_bundle", f"no such file: {checks.ca_bundle}")
    if config.metrics.listen is not None:
        try:
            _split_listen(config.metrics.listen)
        except ValueError as exc:
            raise fail("metrics.listen", str(exc)) from None
    upload = config.upload
    if upload.url is not None and not _COLLECTOR_URL.fullmatch(upload.url):
        raise fail("upload.url", f"expected http(s)://HOST[:PORT], got {upload.url!r}")
    if upload.url is not None and "@" in upload.url.split("://", 1)[1].split("/", 1)[0]:
        raise fail("upload.url", "must not hold a user name (the upload token is the credential)")
    # A missing upload.token is not refused here: the example config keeps it out
    # of the file, in the daemon's environment, and `probe check -c` or `probe
    # status -c` in an admin's shell need no token (upload_token_missing).
    if upload.token is not None:
        from collectors.protocol import check_token

        try:
            check_token(upload.token)
        except UsageError as exc:
            raise fail("upload.token", str(exc)) from None
    if upload.ca_bundle is not None and not Path(upload.ca_bundle).is_file():
        raise fail("upload.ca_bundle", f"no such file: {upload.ca_bundle}")
    if upload.batch > 5000:
        raise fail("upload.batch", "at most 5000 (the collector's default limit)")
    if config.trace.max_ttl > 64:
        raise fail("trace.max_ttl", "must be at most 64")
    if not 0 < config.trace.wait_s <= 30:
        raise fail("trace.wait", "must be between 0 and 30 seconds")


_COLLECTOR_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d+)?(/\S*)?")


def _split_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, an IPv6 address in brackets ('[::1]:9816'); an empty host is
    every IPv4 interface.  '::1:80' or '[::1:80' is refused: which part is
    the port would be a guess."""
    import ipaddress

    host, sep, port_text = text.rpartition(":")
    v6 = host[1:-1] if host.startswith("[") and host.endswith("]") else None
    try:
        if v6 is not None:
            ipaddress.IPv6Address(v6)
        elif any(c in host for c in ":[]"):
            raise ValueError(host)
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(port_text)
    except ValueError:
        raise ValueError(
            f"expected HOST:PORT such as '127.0.0.1:9816' or '[::1]:9816', got {text!r}"
        ) from None
    return (host if v6 is None else v6) or "0.0.0.0", int(port_text)


# -------------------------------------------------------- derived values


def resolve_targets(config: Config) -> tuple[Target, ...]:
    """The configured targets (probe.targets.Target), platforms first, one per domain."""
    from probe.targets import attributed, parse_target, platform_targets

    found: dict[str, Target] = {}
    for platform in config.targets.platforms:
        for target in platform_targets(platform):
            found.setdefault(target.domain, target)
    for target in attributed(parse_target(text) for text in config.targets.domains):
        found.setdefault(target.domain, target)
    return tuple(found.values())


def vantage_of(config: Config) -> Vantage:
    """The storage record of this vantage point, as every measurement is stored with."""
    from storage.records import Vantage

    v = config.vantage
    return Vantage(name=v.name, country=v.country, asn=v.asn, network=v.network, notes=v.notes)


def check_options(config: Config) -> CheckOptions:
    """The CheckOptions the config describes (probe.check's defaults where unset)."""
    from probe.check import CheckOptions

    checks = config.checks
    options = CheckOptions(
        resolver=checks.resolver,
        timeout=checks.timeout_s,
        ca_bundle=checks.ca_bundle,
        helpers=checks.helpers,
    )
    if checks.control_resolvers is not None:
        options = replace(options, control_resolvers=checks.control_resolvers)
    if checks.control_domains is not None:
        options = replace(options, control_domains=checks.control_domains)
    if checks.control_sni is not None:
        options = replace(options, control_sni=checks.control_sni)
    return options


def describe(config: Config) -> dict[str, Any]:
    """The effective config as plain values (for `config check --json` and logs)."""
    out: dict[str, Any] = {}
    for section in _SCHEMA:
        value = getattr(config, section)
        out[section] = {f.name: getattr(value, f.name) for f in fields(value)}
    if config.upload.token:
        out["upload"]["token"] = "***"
    return out
