"""Plain typed records of what a check saw on the network.

Observations are the product's raw data: the classifier reads them, storage
keeps them, exports print them.  They hold facts only (no verdicts), so stored
observations can be re-classified when the classifier improves.  All records
are frozen dataclasses; :func:`to_dict` / :func:`from_dict` convert them to
and from JSON-compatible dicts without loss.

Times: ``elapsed_ms`` is how long that one operation took; ``t_ms`` is when
it started, in milliseconds since the start of the domain's check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from probe.failures import Failure

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give a frozen dataclass an ``__init__`` that writes its fields straight into
    the instance's ``__dict__``.

    ``dataclass(frozen=True)``'s own calls ``object.__setattr__`` for every field
    (the way past the class's refusing ``__setattr__``): about 1,000 instructions
    a field, and a list run makes a few hundred fields' worth of records per
    domain; a dict store is a fifth of that.  The signature and defaults are the
    same and the class stays frozen (``__setattr__`` still refuses).  A class
    with ``__post_init__``, a default factory, an InitVar or keyword-only fields
    keeps dataclasses' own ``__init__``.  Generated source, as dataclasses makes
    its own: it holds nothing but the class's field names.  Used only on the
    records every domain's check makes: making the ``__init__`` costs ~0.7 M
    instructions a class at import, which records made once per run never repay.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(
        f.default_factory is not dataclasses.MISSING or f.kw_only or not f.init for f in fields
    ):
        return cls
    if len(fields) != len(_init_parameters(cls)) - 1:  # an InitVar is a parameter, not a field
        return cls
    defaults = {f"_d_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    params = ", ".join(
        f"{f.name}=_d_{f.name}" if f.default is not dataclasses.MISSING else f.name for f in fields
    )
    body = "".join(f"    _dict_[{f.name!r}] = {f.name}\n" for f in fields)
    namespace: dict[str, Any] = {}
    exec(  # the source holds only the dataclass's own field names
        f"def __init__(self, {params}):\n    _dict_ = self.__dict__\n{body}", defaults, namespace
    )
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def _init_parameters(cls: type) -> tuple[str, ...]:
    """The names of ``cls.__init__``'s parameters (``self`` first)."""
    code = vars(cls)["__init__"].__code__
    return tuple(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])


Origin = Literal["vantage", "control"]


# --------------------------------------------------------------------------- DNS


@quick_init
@dataclass(frozen=True)
class DNSRecord:
    """One resource record of the answer section (A, AAAA or CNAME)."""

    rtype: str
    name: str
    value: str
    ttl: int


@quick_init
@dataclass(frozen=True)
class DNSReply:
    """One reply received for a query; several replies to one query mean injection."""

    rcode: str  # "NOERROR", "NXDOMAIN", ... (dnspython's names)
    records: tuple[DNSRecord, ...]
    elapsed_ms: float  # since the query was sent
    source: str  # "ip:port" that sent it, or the DoH URL

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(r.value for r in self.records if r.rtype in ("A", "AAAA"))

    @property
    def cnames(self) -> tuple[str, ...]:
        return tuple(r.value for r in self.records if r.rtype == "CNAME")


@quick_init
@dataclass(frozen=True)
class DNSQuery:
    """A query of one type for one name to one resolver, and every reply it got."""

    resolver: str  # "udp://10.0.0.1:53", "system:udp://127.0.0.53:53", "https://1.1.1.1/dns-query"
    origin: Origin
    qname: str
    qtype: str  # "A" or "AAAA"
    t_ms: float
    elapsed_ms: float  # until the first reply (or the failure)
    failure: Failure | None  # from the first reply's rcode, or a transport failure
    replies: tuple[DNSReply, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def addresses(self) -> tuple[str, ...]:
        """Addresses of the first reply: the one a stub resolver would have used."""
        return self.replies[0].addresses if self.replies else ()


# ------------------------------------------------------------------ TCP, TLS, HTTP


@quick_init
@dataclass(frozen=True)
class TCPObservation:
    address: str
    port: int
    t_ms: float
    elapsed_ms: float
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


@quick_init
@dataclass(frozen=True)
class Certificate:
    subject: str
    issuer: str
    sans: tuple[str, ...]
    sha256: str
    not_before: str  # RFC 3339 UTC
    not_after: str


@quick_init
@dataclass(frozen=True)
class TLSObservation:
    """A TLS handshake to one address with one SNI.

    ``failure`` is a handshake failure, including certificate verification
    failures (``tls_unknown_authority``...).  When verification failed the
    probe still records the presented chain, so interception can be audited.
    """

    address: str
    port: int
    server_name: str
    t_ms: float
    elapsed_ms: float
    failure: Failure | None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    chain: tuple[Certificate, ...] = ()  # leaf first

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class Redirect:
    status: int
    location: str


@quick_init
@dataclass(frozen=True)
class HTTPObservation:
    """One HTTP request (following same-host redirects) to a pinned address.

    ``body`` keeps the first :data:`BODY_KEEP` bytes decoded as text so that
    blockpage fingerprints can be matched again later; ``body_length`` and
    ``body_sha256`` cover everything read (at most the read cap).
    """

    url: str
    address: str
    port: int
    host: str  # Host header sent
    server_name: str | None  # SNI for https, None for plaintext
    t_ms: float
    elapsed_ms: float
    failure: Failure | None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    title: str | None = None
    body: str = ""
    body_length: int = 0
    body_sha256: str | None = None
    body_truncated: bool = False  # stopped at the read cap or at the deadline
    ttfb_ms: float | None = None  # request sent -> first response byte
    body_ms: float | None = None  # first body byte -> last byte read
    redirects: tuple[Redirect, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def throughput_bps(self) -> float | None:
        """Body download rate in bits/s, when enough was read to tell."""
        if self.body_ms is None or self.body_ms <= 0 or self.body_length < 16 * 1024:
            return None
        return self.body_length * 8 / (self.body_ms / 1000)


BODY_KEEP = 16 * 1024
BODY_READ_CAP = 1024 * 1024


# --------------------------------------------------------------------- endpoints


@quick_init
@dataclass(frozen=True)
class EndpointObservation:
    """Everything measured against one address:port of the target.

    Port 443 endpoints carry ``tls`` (target SNI), ``tls_control_sni`` and
    ``http`` (https with the target SNI; ``http_control_sni`` is the same
    request over a control-SNI handshake, used to detect SNI throttling).
    Port 80 endpoints carry ``http`` (plaintext, Host: domain) and
    ``http_control_host`` (same address, Host: the control name), the
    differential that tells Host filtering from IP blocking.
    """

    address: str
    port: int
    origins: tuple[Origin, ...]  # which resolvers returned this address
    tcp: TCPObservation | None  # None when the address was never dialled
    tls: TLSObservation | None = None
    tls_control_sni: TLSObservation | None = None
    http: HTTPObservation | None = None
    http_control_sni: HTTPObservation | None = None
    http_control_host: HTTPObservation | None = None
    skipped: Failure | None = None  # why the address was not dialled (address_unusable)


# ----------------------------------------------------------------- control sites


@dataclass(frozen=True)
class ControlSiteObservation:
    """A light check of a control domain: is this vantage online at all?"""

    domain: str
    dns: tuple[DNSQuery, ...]
    tcp: TCPObservation | None
    tls: TLSObservation | None

    @property
    def reachable(self) -> bool:
        return self.tls is not None and self.tls.ok


# ---------------------------------------------------------------- control helper


@dataclass(frozen=True)
class HelperEndpoint:
    """What the control helper saw at one ``address:port`` the probe also dialled.

    ``tls_server_name`` is None when the helper made no TLS handshake there
    (port 80); the helper verifies the certificate for the URL's host.
    """

    address: str
    port: int
    tcp_failure: Failure | None
    tls_server_name: str | None = None
    tls_failure: Failure | None = None

    @property
    def tls_ok(self) -> bool:
        return (
            self.tls_server_name is not None
            and self.tcp_failure is None
            and (self.tls_failure is None)
        )


@dataclass(frozen=True)
class HelperHTTP:
    """The helper's fetch of the URL (redirects followed): OONI compares these fields.

    ``redirects`` is reachprobe's extension of the protocol (the hops the
    helper followed); OONI's helpers do not send it, so it is often empty.
    """

    failure: Failure | None
    status: int | None  # None where the protocol says -1
    body_length: int | None
    title: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    redirects: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class HelperASN:
    address: str
    asn: int


@dataclass(frozen=True)
class HelperObservation:
    """The same URL measured by a control helper outside the censor (OONI's TH protocol).

    ``failure`` is set when no helper answered (then only ``helper``,
    ``tried`` and the times mean anything): the check is judged from this
    vantage alone and a reason says so.
    """

    helper: str  # the helper's URL, or "ooni:test-helper" for imported measurements
    t_ms: float
    elapsed_ms: float
    failure: Failure | None
    url: str = ""  # what the helper was asked to fetch
    dns_failure: Failure | None = None
    dns_addresses: tuple[str, ...] = ()
    endpoints: tuple[HelperEndpoint, ...] = ()
    http: HelperHTTP | None = None
    asns: tuple[HelperASN, ...] = ()  # from the helper's ip_info, when it has an ASN database
    tried: tuple[str, ...] = ()  # "URL: failure" for helpers that failed before this one

    @property
    def ok(self) -> bool:
        return self.failure is None

    def endpoint(self, address: str, port: int) -> HelperEndpoint | None:
        return next((e for e in self.endpoints if e.address == address and e.port == port), None)

    @property
    def saw_site(self) -> bool | None:
        """Did the helper fetch the site (a status below 500)? None without an answer."""
        if not self.ok or self.http is None:
            return None
        return (
            self.http.failure is None and self.http.status is not None and (self.http.status < 500)
        )


# ----------------------------------------------------------------- one domain


@dataclass(frozen=True)
class CheckSettings:
    """The inputs that shaped a measurement, kept with it for auditing."""

    resolver: str
    control_resolvers: tuple[str, ...]
    control_sni: str
    control_domains: tuple[str, ...]
    timeout_s: float
    ca_bundle: str | None = None
    helpers: tuple[str, ...] = ()  # control helper URLs asked, in order


@quick_init
@dataclass(frozen=True)
class DomainObservations:
    """All observations of one domain's check: the classifier's whole input."""

    domain: str
    input: str  # what the user typed (URL or domain)
    platform: str | None
    started_at: dt.datetime  # timezone-aware UTC
    duration_ms: float
    settings: CheckSettings
    dns: tuple[DNSQuery, ...]  # vantage and control queries, tagged by origin
    endpoints: tuple[EndpointObservation, ...]
    controls: tuple[ControlSiteObservation, ...] = ()
    probe_version: str = ""
    notes: tuple[str, ...] = field(default=())  # e.g. "addresses capped at 4 per family"
    helper: HelperObservation | None = None  # the view from outside (None: no helper asked)


# ------------------------------------------------------------------- the codec


_SCALARS = frozenset({str, int, float, bool, type(None)})


def to_dict(obj: Any) -> Any:
    """Convert an observation tree to JSON-compatible values (enums by value,
    datetimes as RFC 3339, tuples as lists)."""
    cls = type(obj)
    if cls in _SCALARS:  # most values: decided by one set lookup
        return obj
    convert = _CONVERTERS.get(cls) or _converter(cls)
    return convert(obj)


_CONVERTERS: dict[type, typing.Callable[[Any], Any]] = {}


def _converter(cls: type) -> typing.Callable[[Any], Any]:
    """How :func:`to_dict` converts a value of ``cls``, decided once per class.

    A dataclass gets a function made for it that reads each field and converts
    only the values that are not scalars: walking a domain's observations field
    by field through the generic path was about half of its JSON output's CPU.
    """
    convert: typing.Callable[[Any], Any]
    if dataclasses.is_dataclass(cls):
        convert = _dataclass_converter(cls)
    elif issubclass(cls, enum.Enum):
        convert = _enum_value
    elif issubclass(cls, dt.datetime):
        convert = rfc3339
    elif issubclass(cls, tuple | list):
        convert = _as_list
    else:
        convert = _same
    _CONVERTERS[cls] = convert
    return convert


def _enum_value(obj: enum.Enum) -> Any:
    return obj.value


def _as_list(obj: tuple[Any, ...] | list[Any]) -> list[Any]:
    return [to_dict(v) for v in obj]


def _same(obj: Any) -> Any:
    return obj


def _dataclass_converter(cls: type) -> typing.Callable[[Any], Any]:
    """``lambda o: {"f": to_dict(o.f), ...}`` for ``cls``'s fields, with the
    scalar test inlined.  Generated source, as :mod:`dataclasses` makes
    ``__init__``: a third fewer instructions than the same walk through
    ``operator.attrgetter`` and a comprehension.  Field names are identifiers,
    so the source holds nothing but them."""
    items = ", ".join(
        f"{f.name!r}: v if type(v := o.{f.name}) in scalars else to_dict(v)"
        for f in dataclasses.fields(cls)
    )
    namespace: dict[str, Any] = {}
    exec(  # the source holds only the dataclass's own field names
        f"def convert(o, scalars=scalars, to_dict=to_dict, type=type):\n    return {{{items}}}\n",
        {"scalars": _SCALARS, "to_dict": to_dict},
        namespace,
    )
    return typing.cast(typing.Callable[[Any], Any], namespace["convert"])


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild a dataclass tree written by :func:`to_dict`.

    Unknown keys are ignored and missing keys take the field default, so
    observations stored by an older release still load.
    """
    return typing.cast(T, _decode(cls, data))


def rfc3339(when: dt.datetime) -> str:
    """UTC timestamp with millisecond precision and a trailing Z."""
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_rfc3339(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(members[0], data) if len(members) == 1 else data
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data, strict=False))
    if origin is Literal:
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {
            f.name: _decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(tp)
            if f.name in data
        }
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if tp is dt.datetime:
        return parse_rfc3339(data)
    if tp is float and isinstance(data, int):
        return float(data)
    return data
