"""``probe check``: one-off measurement of domains, a platform, or a test list."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import typer

from probe.cli.data import ConfigOption, DbOption, VantageOption
from probe.errors import ExitStatus, StorageError, UsageError

if TYPE_CHECKING:
    from probe.check import CheckOptions
    from probe.cli.tally import ListTally
    from probe.observations import DomainObservations
    from probe.summary import Result
    from probe.targets import Target
    from probe.verdict import Verdict
    from storage import Store
    from storage.records import StoredMeasurement, Vantage

_CONTROL_DEFAULTS = "example.com, www.wikipedia.org, www.cloudflare.com"


EXAMPLES = """Examples:

\b
  probe check --platform x             X's endpoints, then one line: can people here use X?
  probe check x.com twitter.com        two domains, one line and one reason each
  probe check x.com -d                 the per-endpoint table (DNS, TCP, TLS, HTTP)
  probe check --list pk.csv --json     a Citizen Lab test list, JSON lines
  probe check x.com --no-store         measure without storing anything
"""


def register(app: typer.Typer) -> None:
    app.command(name="check", no_args_is_help=True, epilog=EXAMPLES)(check)


def check(
    targets: list[str] = typer.Argument(None, metavar="DOMAIN|URL...", show_default=False),
    platform: str | None = typer.Option(
        None, "--platform", help="Check a platform's endpoint set (e.g. x); see platforms.toml."
    ),
    list_file: str | None = typer.Option(
        None, "--list", metavar="FILE", help="Check every URL of a Citizen Lab test-list CSV."
    ),
    resolver: str | None = typer.Option(
        None, "--resolver", metavar="IP[:PORT]", help="Vantage resolver (default: the system's)."
    ),
    control_resolver: list[str] = typer.Option(
        None,
        "--control-resolver",
        metavar="IP[:PORT]|URL",
        help="Control resolver, plain DNS or DoH URL; repeatable (default: public DoH by IP).",
    ),
    ca_bundle: str | None = typer.Option(
        None, "--ca-bundle", metavar="PEM", help="Extra trusted CA certificates."
    ),
    control_domain: list[str] = typer.Option(
        None,
        "--control-domain",
        metavar="NAME",
        help="Control site telling 'offline' from 'blocked'; repeatable "
        f"(default: {_CONTROL_DEFAULTS}).",
    ),
    control_sni: str = typer.Option(
        "example.com", "--control-sni", metavar="NAME", help="SNI/Host for the differentials."
    ),
    timeout: float = typer.Option(
        10.0,
        "--timeout",
        metavar="SECONDS",
        help="Deadline per domain (the verdict comes by then).",
    ),
    concurrency: int = typer.Option(
        8,
        "--concurrency",
        help="Domains checked at once (lowered, with a warning, to what ulimit -n allows).",
    ),
    helper: list[str] = typer.Option(
        None,
        "--helper",
        metavar="URL",
        help="Control helper (OONI test-helper protocol) measuring from outside; repeatable, "
        "tried in order (default: the config's [checks] helper, else none).",
    ),
    as_json: bool = typer.Option(False, "--json", help="One probe.check/1 JSON object per line."),
    details: bool = typer.Option(
        False, "--details", "-d", help="Show every endpoint (DNS, TCP, TLS, HTTP) and all notes."
    ),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the results."),
    db: DbOption = None,
    vantage: VantageOption = None,
    config: ConfigOption = None,
) -> None:
    """Check DNS, TCP, TLS and HTTP for each domain and name the blocking method.

    Exit status: 0 all accessible, 1 any blocked, 2 bad usage or input,
    3 otherwise (down, offline, inconclusive), 4 results not stored.
    """
    _load_measuring_code(JSON_MODULES if as_json else ())
    from probe.check import DEFAULT_CONTROL_DOMAINS, DEFAULT_CONTROL_RESOLVERS, CheckOptions

    chosen, skipped = _targets(targets or [], platform, list_file)
    options = CheckOptions(
        resolver=resolver,
        control_resolvers=tuple(control_resolver or DEFAULT_CONTROL_RESOLVERS),
        control_domains=tuple(control_domain or DEFAULT_CONTROL_DOMAINS),
        control_sni=control_sni,
        timeout=timeout,
        ca_bundle=ca_bundle,
        concurrency=concurrency,
        helpers=tuple(helper or ()) or _config_helpers(config),
    )
    sink = None if no_store else _Sink(*vantage_and_db(config, vantage, db))
    show = _Show(as_json=as_json, details=details, platform=platform, sink=sink)
    if list_file:
        from probe.cli.tally import ListTally

        show.tally = ListTally(len(chosen), skipped)
    try:
        statuses = _run(chosen, options, show)
    except KeyboardInterrupt:
        if show.tally is not None:
            show.tally.print(interrupted=True)
        raise
    finally:
        if sink is not None:
            sink.flush()
            sink.close()
    show.close(len(statuses))
    if show.tally is not None:
        show.tally.print()
    if sink is not None and sink.error is not None:
        raise sink.failure(len(statuses))
    if "blocked" in statuses:
        raise typer.Exit(int(ExitStatus.BLOCKED))
    if set(statuses) - {"accessible"}:
        raise typer.Exit(int(ExitStatus.NOT_ACCESSIBLE))


# What every check imports; loaded before the first domain rather than on the
# event loop mid-check, and set apart from the garbage collector (below).
MEASURING_MODULES = (
    "probe.check",
    "probe.checks.dns",
    "probe.checks.tcp",
    "probe.checks.tls",
    "probe.checks.http",
    "probe.classify",
    "probe.render",
)


# What the --json line adds (probe.terminal.json_line): ~10 ms of import, which
# the first finished domain would otherwise pay on the loop with others in flight.
JSON_MODULES = ("msgspec.json",)


YOUNG_GC_THRESHOLD = 10_000
"""Allocations (net of frees) between young collections; Python's default is 700.
A domain's measurement makes a few thousand short-lived objects (coroutines,
futures, observations), so at 700 the collector ran many times per domain and
moved objects still in use into older generations, to be traversed again
there: half of the collector's instructions in a list run (about 1.3 % of the
probe's, docs/benchmarks.md).  Cycles (a failed handshake leaves one) are still
collected, a little later."""


def _load_measuring_code(extra: tuple[str, ...] = ()) -> None:
    """Import the measuring code with the cyclic garbage collector paused,
    then freeze everything allocated so far (modules, classes, functions:
    objects that live until exit anyway).

    Imports allocate a few hundred thousand such objects; collecting while
    they are made, and traversing them in every later full collection and
    twice more at interpreter exit, found nothing to free and cost about a
    tenth of a one-off check's CPU.  Objects made afterwards (connections,
    stores, files, observations) are collected and finalised as before, so
    nothing that must be flushed or closed depends on this; only the young
    generation's threshold is raised (:data:`YOUNG_GC_THRESHOLD`).
    """
    import gc
    import importlib

    gc.disable()
    try:
        for module in (*MEASURING_MODULES, *extra):
            importlib.import_module(module)
    finally:
        gc.freeze()
        gc.set_threshold(YOUNG_GC_THRESHOLD)
        gc.enable()


def _targets(
    args: list[str], platform: str | None, list_file: str | None
) -> tuple[list[Target], int]:
    """The unique targets, and how many list lines were skipped."""
    from probe.targets import attributed, load_test_list, parse_target, platform_targets

    chosen: list[Target] = []
    skipped = 0
    if platform:
        chosen += platform_targets(platform)
    if list_file:
        listed = load_test_list(list_file)
        chosen += listed.targets
        skipped = listed.skipped
    chosen += attributed(parse_target(a, whole_url=True) for a in args)
    if not chosen:
        raise UsageError("nothing to check: give domains or URLs, --platform or --list")
    unique: dict[str, Target] = {}
    for target in chosen:
        unique.setdefault(target.domain, target)
    return list(unique.values()), skipped


def _run(targets: list[Target], options: CheckOptions, show: _Show) -> list[str]:
    """Measure, printing and storing each domain as soon as its verdict is
    known (an interrupted list run keeps what it measured); returns the statuses."""
    import asyncio
    import logging
    import signal

    from probe import eventloop
    from probe.check import check_targets

    log = logging.getLogger("probe.check")
    progress = sys.stderr.isatty() and len(targets) > 1
    statuses: list[str] = []
    show.open(targets)
    log.info("checking %d domain(s), %.0f s deadline each", len(targets), options.timeout)

    stop_requested = False

    async def go() -> None:
        nonlocal stop_requested
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()

        def on_sigint() -> None:
            """First Ctrl-C: finish with what is measured; a second one: at once."""
            nonlocal stop_requested
            if stop.is_set() and main is not None:
                main.cancel()
            stop_requested = True
            stop.set()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            await _each(stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def _each(stop: asyncio.Event) -> None:
        async for obs, verdict in check_targets(targets, options, stop):
            statuses.append(verdict.status.value)
            log.info("%s: %s (%d/%d)", obs.domain, verdict.status, len(statuses), len(targets))
            if progress:
                sys.stderr.write(f"\r\x1b[Kchecked {len(statuses)}/{len(targets)}")
                sys.stderr.flush()
                if not show.as_json:
                    sys.stderr.write("\r\x1b[K")
            if show.sink is not None:
                # Stored before it is shown: a line that cannot be written must not
                # lose the measurement.  In a thread: a locked database may block
                # for its busy timeout while other domains are timed on this loop.
                await asyncio.to_thread(show.sink.save, obs, verdict)
            show.result(obs, verdict)

    try:
        eventloop.run(go())
    except asyncio.CancelledError:  # a second Ctrl-C
        raise KeyboardInterrupt from None
    finally:
        if progress:
            sys.stderr.write("\r\x1b[K")
    if stop_requested:  # everything finished was printed and stored
        raise KeyboardInterrupt
    return statuses


def _config_helpers(config: str | None) -> tuple[str, ...]:
    if config is None:
        return ()
    from probe.config import load_config

    return load_config(config).checks.helpers


class _Show:
    """What the user reads: a header line, each domain as it comes (compact,
    the table with ``--details``, or JSON), then the platform summary and
    what was stored where."""

    def __init__(self, *, as_json: bool, details: bool, platform: str | None, sink: _Sink | None):
        self.as_json, self.details, self.platform, self.sink = as_json, details, platform, sink
        self.colour = sys.stdout.isatty()
        self.width = 0
        self.results: list[Result] = []
        self.tally: ListTally | None = None  # a list run's closing line

    def open(self, targets: list[Target]) -> None:
        self.width = max((len(t.domain) for t in targets), default=0)

    def _header(self, started: dt.datetime) -> None:
        """Printed with the first result: bad options fail before any output."""
        from probe.render import header_line

        point = self.sink.point if self.sink is not None else None
        network = _network(point) if point is not None else None
        name = point.name if point is not None else None
        print(header_line(started, name, network) + "\n", flush=True)

    def result(self, obs: DomainObservations, verdict: Verdict) -> None:
        from probe.render import check_json, check_lines, check_table, redirect_host
        from probe.summary import Result
        from probe.terminal import json_line

        if self.tally is not None:
            self.tally.add(verdict.status.value)
        if self.as_json:
            print(json_line(check_json(obs, verdict)), flush=True)
            return
        if not self.results:
            self._header(obs.started_at)
        self.results.append(Result(obs.domain, verdict, redirect_host(obs)))
        if self.details:
            print(check_table(obs, verdict, colour=self.colour) + "\n", flush=True)
        else:
            print(check_lines(obs, verdict, colour=self.colour, width=self.width), flush=True)

    def close(self, measured: int) -> None:
        if self.as_json or not self.results:
            return
        lines = [""] if not self.details else []
        if self.platform:
            from probe.summary import platform_summary
            from probe.targets import load_platforms

            lines.append(platform_summary(load_platforms()[self.platform.lower()], self.results))
        if self.sink is not None and self.sink.store is not None:
            lines.append(self.sink.stored_line(measured))
        elif self.sink is None:
            lines.append("nothing stored (--no-store)")
        words = {str(r.verdict.trigger) for r in self.results if r.verdict.trigger}
        words |= {str(m) for r in self.results for m in r.verdict.blocking}
        if words:
            lines.append(f"in plain words: probe explain {' '.join(sorted(words)[:4])}")
        print("\n".join(lines), flush=True)


def _network(point: Vantage) -> str | None:
    bits = [f"AS{point.asn}" if point.asn else None, point.network, point.country]
    return " ".join(b for b in bits if b) or None


def vantage_and_db(
    config: str | None, name: str | None, db: str | None
) -> tuple[Vantage, str | None]:
    """Who is measuring, and where results go: the config's vantage and
    database when a config is given (so one-off checks join the daemon's), else
    ``--vantage`` or the host name.  Read before measuring: a broken config
    fails at once."""
    from probe.config import vantage_name
    from storage.records import Vantage

    if name:
        try:
            name = vantage_name(name)
        except ValueError as exc:
            raise UsageError(f"invalid --vantage {name!r}: {exc}") from None
    if config is not None:
        from probe.config import load_config, vantage_of

        loaded = load_config(config)
        point = vantage_of(loaded)
        if name:
            point = Vantage(name, point.country, point.asn, point.network, point.notes)
        return point, db or loaded.storage.url
    return Vantage(name=name or generated_vantage_name()), db


def generated_vantage_name() -> str:
    """A neutral vantage name, made once and kept beside the default database
    so that later checks from this machine share it.  Never the host name:
    a stored or shared database must not say whose machine measured."""
    import secrets

    from storage.database import default_path

    path = default_path().parent / "vantage-name"
    try:
        name = path.read_text("utf-8").strip()
        if name:
            return name
    except OSError:
        pass
    name = f"probe-{secrets.token_hex(3)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n", "utf-8")
    except OSError:
        pass  # still neutral; the next run makes another
    return name


class _Sink:
    """Stores each result as it comes; the first database error is kept and
    reported at the end (after every result was printed), exit status 4.

    After a refusal (a database locked past its busy timeout, say) the next
    results are not tried one by one, each waiting the whole timeout: they
    are kept and stored together in one last attempt when the run ends.
    """

    def __init__(self, point: Vantage, db: str | None) -> None:
        self.point = point
        self.saved = 0
        self.error: StorageError | None = None
        self.store: Store | None = None
        self.waiting: list[StoredMeasurement] = []
        try:
            from probe.cli.data import announce_created
            from storage import Store

            self.store = Store.open(db)
            announce_created(self.store)
        except StorageError as exc:
            self.error = exc

    def save(self, obs: DomainObservations, verdict: Verdict) -> None:
        if self.store is None:
            return
        if self.waiting:
            self.waiting.append(_stored(obs, verdict, self.point))
            return
        try:
            self.store.save(obs, verdict, self.point)
            self.saved += 1
        except StorageError as exc:
            self.error = self.error or exc
            self.waiting.append(_stored(obs, verdict, self.point))

    def flush(self) -> None:
        """The last attempt for results kept after a refusal (one busy timeout at most)."""
        if self.store is None or not self.waiting:
            return
        try:
            added, present = self.store.import_measurements(self.waiting)
        except StorageError as exc:
            self.error = exc
            return
        self.saved += added + present
        self.waiting = []
        self.error = None

    def stored_line(self, measured: int) -> str:
        """What was stored, and where (the privacy contract, docs/deploy.md)."""
        assert self.store is not None
        where = self.store.database.location()
        return (
            f'stored {self.saved} of {measured} result(s) as vantage "{self.point.name}" in '
            f"{where}: verdicts, addresses, timings, page titles\n"
            '  before sharing them, read "What running a probe reveals" in docs/deploy.md'
        )

    def failure(self, measured: int) -> Exception:
        return StorageError(
            f"results printed but {measured - self.saved} of {measured} NOT stored: {self.error}"
        )

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _stored(obs: DomainObservations, verdict: Verdict, point: Vantage) -> StoredMeasurement:
    import uuid

    from storage.records import StoredMeasurement
    from storage.summary import measurement_row

    row = measurement_row(str(uuid.uuid4()), point, obs, verdict)
    return StoredMeasurement(row, obs, verdict)
