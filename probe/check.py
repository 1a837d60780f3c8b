"""Run one check: DNS, TCP, TLS and HTTP against every address of each target.

The flow per domain, all under one deadline (``timeout`` seconds from the
domain's start, so a fully blocked domain still gets its verdict in about
``timeout`` seconds rather than a sum of per-step timeouts):

1. DNS: A and AAAA through the vantage resolver and every control resolver,
   concurrently (DNS gets at most :data:`DNS_SHARE` of the budget so that
   control addresses can still be dialled when the vantage resolver hangs).
   Each UDP query keeps listening :data:`DNS_WINDOW` after its first reply
   for injected ones, while step 2 already runs.
2. Endpoints: every address any first reply named (capped per family and
   origin), ports 443 and 80 concurrently: TCP, TLS with the target SNI, TLS
   with the control SNI, HTTPS GET; plaintext GET with the target Host and
   with a control Host.
3. With ``--helper``: as soon as DNS is done, the URL and every endpoint go
   to a control helper (:mod:`probe.helper.client`), in parallel with step 2
   and under the same deadline; a blocked helper cannot delay the verdict.
4. The classifier turns the observations into a verdict.

Control sites (``--control-domain``) are measured once per run, in parallel
with the first targets, and attached to every domain's observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from probe import __version__, netaddr
from probe.failures import Failure
from probe.observations import (
    CheckSettings,
    ControlSiteObservation,
    DNSQuery,
    DomainObservations,
    EndpointObservation,
    HelperObservation,
    HTTPObservation,
    Origin,
    TCPObservation,
    TLSObservation,
)
from probe.targets import Target
from probe.verdict import Verdict

if TYPE_CHECKING:
    import ssl

    from probe.blockpages import Fingerprint
    from probe.checks.dns import Resolver
    from probe.checks.tcp import Connection

A = TypeVar("A")
B = TypeVar("B")

DEFAULT_CONTROL_RESOLVERS: tuple[str, ...] = (
    "https://1.1.1.1/dns-query",
    "https://8.8.8.8/dns-query",
)
# Sites that are up nearly always and rarely blocked: if none of them is
# reachable, the vantage is offline and no verdict about the target is fair.
DEFAULT_CONTROL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "www.wikipedia.org",
    "www.cloudflare.com",
)
DEFAULT_CONTROL_SNI = "example.com"
DEFAULT_TIMEOUT = 10.0
DNS_SHARE = 0.4  # of the deadline, at most, spent waiting for DNS
DNS_WINDOW = 0.3  # seconds to keep listening for further (injected) replies


@dataclass(frozen=True)
class CheckOptions:
    """What a check needs besides the targets; strings as the user typed them."""

    resolver: str | None = None  # "IP[:PORT]" or a DoH URL; None = the system resolver
    control_resolvers: tuple[str, ...] = DEFAULT_CONTROL_RESOLVERS
    control_domains: tuple[str, ...] = DEFAULT_CONTROL_DOMAINS
    control_sni: str = DEFAULT_CONTROL_SNI
    timeout: float = DEFAULT_TIMEOUT
    ca_bundle: str | None = None
    max_addresses_per_family: int = 4
    concurrency: int = 8
    allow_loopback: bool = False  # tests only: lets in-process loopback servers be dialled
    helpers: tuple[str, ...] = ()  # control helper URLs, tried in order


@dataclass(frozen=True)
class _Plan:
    """CheckOptions resolved once per run (parsed resolvers, TLS contexts)."""

    options: CheckOptions
    resolver: Resolver
    control_resolvers: tuple[Resolver, ...]
    verified: ssl.SSLContext  # for the TLS checks (browser-like ALPN)
    unverified: ssl.SSLContext  # loads no trust store: cheap
    fingerprints: tuple[Fingerprint, ...]

    def http_context(self, *, verify: bool) -> Callable[[], ssl.SSLContext]:
        """The context for an https hop the HTTP check dials itself (a redirect,
        or a server that chose HTTP/2 on the measured connection): it offers
        only http/1.1, and is built the first time one is dialled, as a
        verifying one loads the system trust store again."""
        from probe.checks import http, tls

        return functools.partial(
            tls.make_context, self.options.ca_bundle, verify=verify, alpn=http.HTTP_ALPN
        )

    @functools.cached_property
    def settings(self) -> CheckSettings:
        """Made once per run (every domain's observations share it: it is frozen)."""
        o = self.options
        return CheckSettings(
            resolver=self.resolver.label,
            control_resolvers=tuple(r.label for r in self.control_resolvers),
            control_sni=o.control_sni,
            control_domains=o.control_domains,
            timeout_s=o.timeout,
            ca_bundle=o.ca_bundle,
            helpers=o.helpers,
        )


def plan(options: CheckOptions) -> _Plan:
    """Validate options up front (raises UsageError) so bad input fails before any packet."""
    from probe.blockpages import load_fingerprints
    from probe.checks import dns, tls
    from probe.errors import UsageError
    from probe.helper.client import check_url
    from probe.targets import normalize_domain

    if not 0 < options.timeout <= 600:
        raise UsageError(f"invalid --timeout {options.timeout}: give seconds between 0 and 600")
    if options.concurrency < 1:
        raise UsageError("invalid concurrency: must be at least 1")
    normalize_domain(options.control_sni)
    for url in options.helpers:
        check_url(url)
    if options.helpers:
        # The helper client's HTTP stack, imported now rather than on the event
        # loop mid-check, where it would hold back every check already started.
        import httpx  # noqa: F401
    for name in options.control_domains:
        normalize_domain(name)
    resolver = dns.parse_resolver(options.resolver) if options.resolver else dns.system_resolver()
    return _Plan(
        options=options,
        resolver=resolver,
        control_resolvers=tuple(dns.parse_resolver(r) for r in options.control_resolvers),
        verified=tls.make_context(options.ca_bundle),
        unverified=tls.make_context(verify=False),
        fingerprints=load_fingerprints(),
    )


async def check_targets(
    targets: Sequence[Target], options: CheckOptions, stop: asyncio.Event | None = None
) -> AsyncIterator[tuple[DomainObservations, Verdict]]:
    """Yield each domain's observations and verdict as it completes.

    Raises UsageError before measuring anything when the options are invalid;
    never raises for network behaviour.  Setting ``stop`` (Ctrl-C) ends the
    run early without losing what finished: domains still being measured are
    dropped, and those only waiting for the control sites are yielded at once
    without them (with a note saying so).
    """
    from probe import fdlimit
    from probe.classify import classify

    run = plan(options)
    concurrency = fdlimit.allowed_concurrency(options, min(options.concurrency, len(targets) or 1))
    controls_task = asyncio.create_task(_check_control_sites(run))
    # A domain's task is created when a slot frees up, not all up front, and is
    # forgotten once done; results are handed over through a queue, not kept as
    # the tasks' results: nothing of a finished domain stays once the caller has
    # it, and a list of 10,000 costs no more memory than one of 100.
    finished: asyncio.Queue[DomainObservations | BaseException] = asyncio.Queue()
    upcoming = iter(targets)
    running: set[asyncio.Task[DomainObservations]] = set()
    waiting: set[asyncio.Task[Any]] = set()  # measured, waiting for the control sites
    launched = 0
    ended = False  # the caller stopped iterating (or a bug was raised): start nothing more

    def launch() -> None:
        """Start the next domain, unless the list is done or the run interrupted."""
        nonlocal launched
        if ended or (stop is not None and stop.is_set()):
            return
        target = next(upcoming, None)
        if target is None:
            return
        task = asyncio.create_task(check_domain(target, run, controls_task, waiting))
        task.add_done_callback(landed)
        running.add(task)
        launched += 1

    def landed(task: asyncio.Task[DomainObservations]) -> None:
        """Hand the domain's outcome over (exactly one item per task) and start the next."""
        running.discard(task)
        waiting.discard(task)
        if task.cancelled():  # dropped by an interrupt, or the run ends
            finished.put_nowait(asyncio.CancelledError())
        else:  # an exception is a bug, not network behaviour: the caller raises it
            finished.put_nowait(task.exception() or task.result())
        launch()

    for _ in range(concurrency):
        launch()
    watcher = asyncio.create_task(_interrupt(stop, running, waiting, controls_task))
    received = 0
    try:
        while received < launched:
            item = await finished.get()
            received += 1
            if isinstance(item, asyncio.CancelledError) and stop is not None and stop.is_set():
                continue  # dropped by the interrupt: it had not finished
            if isinstance(item, BaseException):
                raise item
            yield item, classify(item, run.fingerprints)
            del item
    finally:
        ended = True
        left = [*running, controls_task, watcher]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


async def _interrupt(
    stop: asyncio.Event | None,
    running: set[asyncio.Task[DomainObservations]],
    waiting: set[asyncio.Task[Any]],
    controls: asyncio.Task[Any],
) -> None:
    if stop is None:
        return
    await stop.wait()
    for task in list(running):
        if task not in waiting:
            task.cancel()
    controls.cancel()  # the waiting domains go on without the control sites


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def check_domain(
    target: Target,
    run: _Plan,
    controls: Awaitable[tuple[ControlSiteObservation, ...]] | None = None,
    waiting: set[asyncio.Task[Any]] | None = None,
) -> DomainObservations:
    """Measure one domain under the run's deadline."""
    started_at = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    clock = _Deadline(t0, run.options.timeout)
    # Dial (and ask the helpers) as soon as every query has its first answer; the
    # queries keep listening for late (injected) replies meanwhile, and the window
    # ends the check only when it is the last thing left (as OONI's Web
    # Connectivity v0.5).
    answers, listening = await _resolve_all(target.domain, run, clock)
    helper = (
        asyncio.create_task(_ask_helpers(target, answers, run, clock))
        if run.options.helpers
        else None
    )
    try:
        endpoints = await _probe_endpoints(target.domain, answers, run, clock)
        helper_view = await helper if helper is not None else None
        queries = tuple(await listening)
    finally:
        if helper is not None:
            helper.cancel()  # a no-op once it is done; no orphan when the check is cancelled
        _discard(listening)
    notes = _notes(queries, run.options.max_addresses_per_family)
    control_sites: tuple[ControlSiteObservation, ...] = ()
    if controls is not None:
        task = asyncio.current_task()
        if waiting is not None and task is not None:
            waiting.add(task)
        try:
            control_sites = await controls
        except asyncio.CancelledError:
            if _cancelling():
                raise
            notes = (*notes, "control sites not measured: the run was interrupted")
    return DomainObservations(
        domain=target.domain,
        input=target.input,
        platform=target.platform,
        started_at=started_at,
        duration_ms=round((time.monotonic() - t0) * 1000, 1),
        settings=run.settings,
        dns=queries,
        endpoints=endpoints,
        controls=control_sites,
        probe_version=__version__,
        notes=notes,
        helper=helper_view,
    )


@dataclass(frozen=True)
class _Deadline:
    t0: float
    budget: float

    def remaining(self) -> float:
        return max(0.0, self.t0 + self.budget - time.monotonic())


# ----------------------------------------------------------------------- DNS


async def _resolve_all(
    domain: str, run: _Plan, clock: _Deadline
) -> tuple[tuple[DNSQuery, ...], asyncio.Future[list[DNSQuery]]]:
    """Every resolver's first answers, and the queries still listening for
    further replies (a future of the finished queries)."""
    loop = asyncio.get_running_loop()
    firsts: list[asyncio.Future[DNSQuery]] = []
    tasks: list[asyncio.Task[DNSQuery]] = []
    for job in _queries(domain, _resolvers(run), run, clock, listen=True):
        first: asyncio.Future[DNSQuery] = loop.create_future()
        task = asyncio.create_task(job(answered=first.set_result))
        task.add_done_callback(functools.partial(_settle, first))
        firsts.append(first)
        tasks.append(task)
    listening = asyncio.gather(*tasks)
    try:
        return tuple(await asyncio.gather(*firsts)), listening
    except BaseException:
        _discard(listening)
        raise


def _discard(future: asyncio.Future[list[DNSQuery]]) -> None:
    """Cancel queries nobody will wait for; a cancelled gather holds its
    CancelledError as an exception, which must count as seen (asyncio would
    log it with a traceback)."""
    if future.done():
        return
    future.cancel()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _settle(first: asyncio.Future[DNSQuery], task: asyncio.Task[DNSQuery]) -> None:
    """A query that finished before it called back: its result is its first answer."""
    if first.done():
        return
    if task.cancelled():
        first.cancel()
    elif (exc := task.exception()) is not None:
        first.set_exception(exc)
    else:
        first.set_result(task.result())


async def _resolve(
    domain: str,
    resolvers: Sequence[tuple[Origin, Resolver]],
    run: _Plan,
    clock: _Deadline,
) -> tuple[DNSQuery, ...]:
    """A and AAAA from every resolver at once; only an answer is needed (control sites)."""
    jobs = _queries(domain, resolvers, run, clock, listen=False)
    return tuple(await asyncio.gather(*(job() for job in jobs)))


def _queries(
    domain: str,
    resolvers: Sequence[tuple[Origin, Resolver]],
    run: _Plan,
    clock: _Deadline,
    *,
    listen: bool,
) -> list[functools.partial[Coroutine[Any, Any, DNSQuery]]]:
    """A and AAAA from every resolver, within DNS's share of the deadline
    (``dns.query`` calls, waiting for their ``answered`` callback).

    ``listen`` keeps each socket open a little after the first reply so that
    injected replies show; control sites need only an answer.
    """
    from probe.checks import dns

    timeout = max(0.1, min(clock.remaining() * DNS_SHARE, clock.remaining() - 0.1))
    window = min(DNS_WINDOW, timeout / 4) if listen else 0.0
    return [
        functools.partial(
            dns.query,
            resolver,
            domain,
            qtype,
            origin=origin,
            timeout=timeout,
            t0=clock.t0,
            window=window,
            ca_bundle=run.options.ca_bundle,
        )
        for origin, resolver in resolvers
        for qtype in ("A", "AAAA")
    ]


def _resolvers(run: _Plan) -> list[tuple[Origin, Resolver]]:
    pairs: list[tuple[Origin, Resolver]] = [("vantage", run.resolver)]
    pairs += [("control", r) for r in run.control_resolvers]
    return pairs


def _addresses(queries: Sequence[DNSQuery], cap: int) -> dict[str, tuple[Origin, ...]]:
    """Every address from every first reply, with the origins that returned it.

    At most ``cap`` addresses per family and origin, in answer order, so one
    domain with dozens of CDN addresses cannot make a check unbounded.
    """
    found: dict[str, list[Origin]] = {}
    taken: dict[tuple[Origin, int], int] = {}
    for query in queries:
        for address in query.addresses:
            key = (query.origin, netaddr.family(address))
            if address in found:
                if query.origin not in found[address]:
                    found[address].append(query.origin)
                continue
            if taken.get(key, 0) >= cap:
                continue
            taken[key] = taken.get(key, 0) + 1
            found[address] = [query.origin]
    return {a: tuple(o) for a, o in found.items()}


def _notes(queries: Sequence[DNSQuery], cap: int) -> tuple[str, ...]:
    counts: dict[tuple[str, str], int] = {}
    for q in queries:
        counts[(q.origin, q.qtype)] = max(counts.get((q.origin, q.qtype), 0), len(q.addresses))
    return tuple(
        f"{origin} {qtype} answers capped at {cap} of {n} addresses"
        for (origin, qtype), n in sorted(counts.items())
        if n > cap
    )


# ------------------------------------------------------------- control helper


async def _ask_helpers(
    target: Target, queries: Sequence[DNSQuery], run: _Plan, clock: _Deadline
) -> HelperObservation | None:
    """The helper's view of the URL and of every address this check dials."""
    if not run.options.helpers:
        return None
    from probe.helper.client import ask

    scheme = "http" if target.input.lower().startswith("http://") else "https"
    addresses = _addresses(queries, run.options.max_addresses_per_family)
    endpoints = [(a, p) for a in addresses if netaddr.is_ip(a) for p in (443, 80)]
    return await ask(
        run.options.helpers,
        f"{scheme}://{target.domain}/",
        endpoints,
        timeout=clock.remaining(),
        t0=clock.t0,
        ca_bundle=run.options.ca_bundle,
    )


# ----------------------------------------------------------------- endpoints


async def _probe_endpoints(
    domain: str, queries: Sequence[DNSQuery], run: _Plan, clock: _Deadline
) -> tuple[EndpointObservation, ...]:
    addresses = _addresses(queries, run.options.max_addresses_per_family)
    jobs: list[Awaitable[EndpointObservation]] = []
    compared_families: set[int] = set()
    for address, origins in addresses.items():
        if not netaddr.is_dialable(address, allow_loopback=run.options.allow_loopback):
            for port in (443, 80):
                jobs.append(_skipped(address, port, origins))
            continue
        # One throughput comparison per family is enough: throttling keys on
        # the SNI, not the address, and each comparison downloads the page twice.
        family = netaddr.family(address)
        compare = family not in compared_families
        compared_families.add(family)
        jobs.append(_probe_https(domain, address, origins, run, clock, compare))
        jobs.append(_probe_http(domain, address, origins, run, clock))
    return tuple(await asyncio.gather(*jobs))


async def _skipped(address: str, port: int, origins: tuple[Origin, ...]) -> EndpointObservation:
    return EndpointObservation(
        address=address, port=port, origins=origins, tcp=None, skipped=Failure.ADDRESS_UNUSABLE
    )


async def _connect(
    address: str, port: int, run: _Plan, clock: _Deadline
) -> tuple[TCPObservation, Connection | None]:
    from probe.checks import tcp

    return await tcp.connect(
        address,
        port,
        timeout=clock.remaining(),
        t0=clock.t0,
        allow_loopback=run.options.allow_loopback,
    )


async def _probe_https(
    domain: str,
    address: str,
    origins: tuple[Origin, ...],
    run: _Plan,
    clock: _Deadline,
    compare_throughput: bool,
) -> EndpointObservation:
    """TCP, then TLS with the target SNI and the HTTPS GET over that same
    connection; beside it, on a connection of its own, TLS with the control SNI
    (and, for the throughput comparison, a GET over that one).

    The two downloads of a comparison start together: one read later, from a
    socket buffer the server has already filled, would look many times faster.
    """
    tcp_obs, conn = await _connect(address, 443, run, clock)
    if conn is None:
        return EndpointObservation(address=address, port=443, origins=origins, tcp=tcp_obs)
    start = asyncio.Barrier(2) if compare_throughput else None

    async def target_path() -> tuple[TLSObservation, HTTPObservation | None]:
        tls_obs = await _handshake(conn, domain, run.verified, clock)
        if not await _together(start, clock, tls_obs.ok):
            return tls_obs, None
        return tls_obs, await _fetch_https(domain, domain, conn, run, clock, verify=True)

    async def control_path() -> tuple[TLSObservation | None, HTTPObservation | None]:
        _, control = await _connect(address, 443, run, clock)
        if control is None:
            await _together(start, clock, False)
            return None, None
        sni = run.options.control_sni
        tls_obs = await _handshake(control, sni, run.unverified, clock, keep=compare_throughput)
        if not await _together(start, clock, tls_obs.ok) or not compare_throughput:
            return tls_obs, None
        return tls_obs, await _fetch_https(domain, sni, control, run, clock, verify=False)

    (tls_obs, http_obs), (control_tls, control_http) = await _beside(target_path(), control_path())
    return EndpointObservation(
        address=address,
        port=443,
        origins=origins,
        tcp=tcp_obs,
        tls=tls_obs,
        tls_control_sni=control_tls,
        http=http_obs,
        http_control_sni=control_http,
    )


async def _beside(first: Coroutine[Any, Any, A], second: Coroutine[Any, Any, B]) -> tuple[A, B]:
    """``asyncio.gather(first, second)`` with one task instead of two (a list
    run starts a few per domain): ``first`` runs in the caller's task, started
    first as gather would, ``second`` in a task of its own, cancelled if
    ``first`` fails or the caller is cancelled."""
    task = asyncio.create_task(second)
    try:
        result = await first
    except BaseException:
        task.cancel()
        raise
    return result, await task


async def _together(start: asyncio.Barrier | None, clock: _Deadline, ready: bool) -> bool:
    """Wait until the other download of a comparison is ready too (or will not
    happen); returns ``ready``.  Without a comparison, returns at once."""
    if start is None:
        return ready
    if not ready:
        await start.abort()
        return False
    from probe.checks.timer import within

    with contextlib.suppress(asyncio.BrokenBarrierError, TimeoutError), within(clock.remaining()):
        await start.wait()
    return True


async def _handshake(
    conn: Connection,
    server_name: str,
    context: ssl.SSLContext,
    clock: _Deadline,
    *,
    keep: bool = True,
) -> TLSObservation:
    """TLS over ``conn``; the connection stays open for HTTP only if it worked
    and ``keep`` says HTTP will use it."""
    from probe.checks import tls

    tls_obs: TLSObservation | None = None
    try:
        tls_obs = await tls.handshake(
            conn, server_name=server_name, context=context, timeout=clock.remaining(), t0=clock.t0
        )
    finally:
        if tls_obs is None or not tls_obs.ok or not keep:
            await conn.close()
    return tls_obs


async def _fetch_https(
    domain: str,
    server_name: str,
    conn: Connection,
    run: _Plan,
    clock: _Deadline,
    *,
    verify: bool,
) -> HTTPObservation:
    """GET the domain's page over ``conn``, the connection TLS was measured on."""
    from probe.checks import http

    return await http.fetch(
        f"https://{domain}/",
        address=conn.address,
        host=domain,
        server_name=server_name,
        context=run.http_context(verify=verify),
        timeout=clock.remaining(),
        t0=clock.t0,
        allow_loopback=run.options.allow_loopback,
        connection=conn,
    )


async def _probe_http(
    domain: str, address: str, origins: tuple[Origin, ...], run: _Plan, clock: _Deadline
) -> EndpointObservation:
    """Plaintext HTTP: the path where Host filtering and injected blockpages show."""
    from probe.checks import http

    tcp_obs, conn = await _connect(address, 80, run, clock)
    if conn is None:
        return EndpointObservation(address=address, port=80, origins=origins, tcp=tcp_obs)

    async def get(host: str, connection: Connection | None) -> HTTPObservation:
        return await http.fetch(
            f"http://{host}/",
            address=address,
            host=host,
            timeout=clock.remaining(),
            t0=clock.t0,
            follow_https=False,
            allow_loopback=run.options.allow_loopback,
            connection=connection,
        )

    # The target Host goes over the measured connection; the control Host to the
    # same address at the same time: if only the target Host is reset or answered
    # with a blockpage, the censor keys on Host.
    target, control = await _beside(get(domain, conn), get(run.options.control_sni, None))
    return EndpointObservation(
        address=address,
        port=80,
        origins=origins,
        tcp=tcp_obs,
        http=target,
        http_control_host=control,
    )


# -------------------------------------------------------------- control sites


async def _check_control_sites(run: _Plan) -> tuple[ControlSiteObservation, ...]:
    return tuple(
        await asyncio.gather(*(_check_control_site(d, run) for d in run.options.control_domains))
    )


async def _check_control_site(domain: str, run: _Plan) -> ControlSiteObservation:
    """Resolve through the vantage resolver, then TCP+TLS to the first address.

    Light on purpose: it only has to tell "the vantage is online" apart
    from "the target is blocked".
    """
    from probe.checks import tls

    clock = _Deadline(time.monotonic(), run.options.timeout)
    queries = await _resolve(domain, [("vantage", run.resolver)], run, clock)
    candidates = [
        a
        for q in queries
        for a in q.addresses
        if netaddr.is_dialable(a, allow_loopback=run.options.allow_loopback)
    ]
    tcp_obs: TCPObservation | None = None
    tls_obs: TLSObservation | None = None
    for address in candidates[:2]:
        tcp_obs, tls_obs = await tls.probe_tls(
            address,
            443,
            domain,
            context=run.verified,
            timeout=clock.remaining(),
            t0=clock.t0,
            allow_loopback=run.options.allow_loopback,
        )
        if tls_obs is not None and tls_obs.ok:
            break
    return ControlSiteObservation(domain=domain, dns=queries, tcp=tcp_obs, tls=tls_obs)
