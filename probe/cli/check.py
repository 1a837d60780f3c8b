"""``probe check``: one-off measurement of domains, a platform, or a test list."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from probe.errors import ExitStatus, StorageError, UsageError

if TYPE_CHECKING:
    from probe.check import CheckOptions
    from probe.observations import DomainObservations
    from probe.targets import Target
    from probe.verdict import Verdict
    from storage import Store
    from storage.records import Vantage

_CONTROL_DEFAULTS = "example.com, www.wikipedia.org, www.cloudflare.com"


def register(app: typer.Typer) -> None:
    app.command(name="check", no_args_is_help=True)(check)


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
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the results."),
    db: str | None = typer.Option(
        None, "--db", metavar="URL", envvar="PROBE_DB", help="Database URL (default: SQLite file)."
    ),
    vantage: str | None = typer.Option(
        None, "--vantage", envvar="PROBE_VANTAGE", help="Name of this vantage point (stored)."
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        "-c",
        envvar="REACHPROBE_CONFIG",
        metavar="FILE",
        help="Daemon config: stores with its vantage (name, country, ASN) and database.",
    ),
) -> None:
    """Check DNS, TCP, TLS and HTTP for each domain and name the blocking method.

    Exit status: 0 all accessible, 1 any blocked, 2 bad usage or input,
    3 otherwise (down, offline, inconclusive), 4 results not stored.
    """
    from probe.check import DEFAULT_CONTROL_DOMAINS, DEFAULT_CONTROL_RESOLVERS, CheckOptions

    chosen = _targets(targets or [], platform, list_file)
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
    sink = None if no_store else _Sink(*_vantage(config, vantage, db))
    try:
        statuses = _run(chosen, options, as_json=as_json, sink=sink)
    finally:
        if sink is not None:
            sink.close()
    if sink is not None and sink.error is not None:
        raise sink.failure(len(statuses))
    if "blocked" in statuses:
        raise typer.Exit(int(ExitStatus.BLOCKED))
    if set(statuses) - {"accessible"}:
        raise typer.Exit(int(ExitStatus.NOT_ACCESSIBLE))


def _targets(args: list[str], platform: str | None, list_file: str | None) -> list[Target]:
    from probe.targets import attributed, parse_target, platform_targets, read_test_list

    chosen: list[Target] = []
    if platform:
        chosen += platform_targets(platform)
    if list_file:
        chosen += read_test_list(list_file)
    chosen += attributed(parse_target(a, whole_url=True) for a in args)
    if not chosen:
        raise UsageError("nothing to check: give domains or URLs, --platform or --list")
    unique: dict[str, Target] = {}
    for target in chosen:
        unique.setdefault(target.domain, target)
    return list(unique.values())


def _run(
    targets: list[Target], options: CheckOptions, *, as_json: bool, sink: _Sink | None
) -> list[str]:
    """Measure, printing and storing each domain as soon as its verdict is
    known (an interrupted list run keeps what it measured); returns the statuses."""
    import asyncio

    from probe.check import check_targets
    from probe.render import check_json, check_table
    from probe.terminal import json_text

    colour = sys.stdout.isatty()
    progress = sys.stderr.isatty() and len(targets) > 1
    statuses: list[str] = []

    async def go() -> None:
        async for obs, verdict in check_targets(targets, options):
            statuses.append(verdict.status.value)
            if progress:
                sys.stderr.write(f"\r\x1b[Kchecked {len(statuses)}/{len(targets)}")
                sys.stderr.flush()
            if as_json:
                print(json_text(check_json(obs, verdict)), flush=True)
            else:
                if progress:
                    sys.stderr.write("\r\x1b[K")
                print(check_table(obs, verdict, colour=colour) + "\n", flush=True)
            if sink is not None:
                # In a thread: a locked database may block for its busy timeout
                # while other domains are being timed on this event loop.
                await asyncio.to_thread(sink.save, obs, verdict)

    try:
        asyncio.run(go())
    finally:
        if progress:
            sys.stderr.write("\r\x1b[K")
    return statuses


def _config_helpers(config: str | None) -> tuple[str, ...]:
    if config is None:
        return ()
    from probe.config import load_config

    return load_config(config).checks.helpers


def _vantage(config: str | None, name: str | None, db: str | None) -> tuple[Vantage, str | None]:
    """Who is measuring, and where results go: the config's vantage and
    database when a config is given (so one-off checks join the daemon's), else
    ``--vantage`` or the host name.  Read before measuring: a broken config
    fails at once."""
    from storage.records import Vantage

    if config is not None:
        from probe.config import load_config, vantage_of

        loaded = load_config(config)
        point = vantage_of(loaded)
        if name:
            point = Vantage(name, point.country, point.asn, point.network, point.notes)
        return point, db or loaded.storage.url
    import socket

    return Vantage(name=name or socket.gethostname()), db


class _Sink:
    """Stores each result as it comes; the first database error is kept and
    reported at the end (after every result was printed), exit status 4."""

    def __init__(self, point: Vantage, db: str | None) -> None:
        self.point = point
        self.saved = 0
        self.error: StorageError | None = None
        self.store: Store | None = None
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
        try:
            self.store.save(obs, verdict, self.point)
            self.saved += 1
        except StorageError as exc:
            self.error = self.error or exc

    def failure(self, measured: int) -> Exception:
        return StorageError(
            f"results printed but {measured - self.saved} of {measured} NOT stored: {self.error}"
        )

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
