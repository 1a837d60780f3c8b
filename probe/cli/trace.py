"""``probe trace``: locate the censor on the path and fingerprint its packets."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import typer

from probe.cli.data import ConfigOption, DbOption, VantageOption, open_store
from probe.errors import ExitStatus, StorageError, UsageError

if TYPE_CHECKING:
    from probe.trace.locate import Location
    from probe.trace.observations import TraceObservation
    from storage.records import Vantage
    from storage.traces import TraceSummary


def register(app: typer.Typer) -> None:
    app.command(name="trace", no_args_is_help=True)(trace)
    app.command(name="traces")(traces)


def trace(
    domain: str = typer.Argument(..., metavar="DOMAIN", show_default=False),
    resolver: str | None = typer.Option(
        None, "--resolver", metavar="IP[:PORT]", help="Vantage resolver (default: the system's)."
    ),
    control_resolver: str | None = typer.Option(
        None,
        "--control-resolver",
        metavar="IP[:PORT]",
        help="Send the TTL-limited DNS queries here instead (plain DNS, beyond the censor).",
    ),
    ca_bundle: str | None = typer.Option(
        None, "--ca-bundle", metavar="PEM", help="Extra trusted CA certificates."
    ),
    control_sni: str = typer.Option(
        "example.com", "--control-sni", metavar="NAME", help="Control SNI, Host and DNS name."
    ),
    max_ttl: int = typer.Option(30, "--max-ttl", metavar="N", help="Longest path probed (1-64)."),
    wait: float = typer.Option(
        1.0, "--wait", metavar="SECONDS", help="How long each probe waits for an answer."
    ),
    as_json: bool = typer.Option(False, "--json", help="One probe.trace/1 JSON object."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the trace."),
    db: DbOption = None,
    vantage: VantageOption = None,
    config: ConfigOption = None,
) -> None:
    """Find the hop where DOMAIN is interfered with, and whether its resets are forged.

    Needs raw sockets (root or CAP_NET_RAW). Exit status: 0 no interference,
    1 interference found, 2 bad usage or input, 3 not traced (the resolver gave
    no address), 4 printed but not stored, 77 no raw sockets or no scapy.
    """
    from probe.checks.dns import parse_resolver, system_resolver
    from probe.cli.check import vantage_and_db
    from probe.targets import normalize_domain
    from probe.terminal import json_text, printable_lines
    from probe.trace.locate import locate
    from probe.trace.render import text, to_json
    from probe.trace.run import TraceOptions
    from probe.trace.run import trace as run_trace

    name = normalize_domain(domain)
    control = normalize_domain(control_sni)
    if not 1 <= max_ttl <= 64:
        raise UsageError(f"--max-ttl {max_ttl}: expected 1 to 64")
    if not 0 < wait <= 30:
        raise UsageError(f"--wait {wait:g}: expected more than 0 and at most 30 seconds")
    if ca_bundle is not None:
        _readable(ca_bundle)
    chosen = control_resolver or resolver
    dns_server = parse_resolver(chosen) if chosen else system_resolver()
    if dns_server.scheme != "udp" or ":" in dns_server.host:
        raise UsageError(
            "probe trace sends its DNS probes over plain IPv4 DNS: pass --resolver IP[:PORT]"
        )
    point, url = (None, None) if no_store else vantage_and_db(config, vantage, db)
    options = TraceOptions(
        resolver=(dns_server.host, dns_server.port),
        control_name=control,
        ca_bundle=ca_bundle,
        max_ttl=max_ttl,
        wait=wait,
    )
    observation = run_trace(name, options)
    location = locate(observation)
    if as_json:
        print(json_text(to_json(observation, location)), flush=True)
    else:
        print(printable_lines(text(observation, location)), flush=True)
    if point is not None:
        _store(observation, location, point, url)
    if location.interference is not None:
        raise typer.Exit(int(ExitStatus.BLOCKED))
    if observation.address is None:  # no address to send to: nothing was tested
        raise typer.Exit(int(ExitStatus.NOT_ACCESSIBLE))


def _readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"--ca-bundle {path}: cannot read: {exc.strerror}") from None


def _store(
    observation: TraceObservation, location: Location, point: Vantage, url: str | None
) -> None:
    """Keep the trace; a database error after printing is exit 4, as for probe check."""
    from storage import Store
    from storage.traces import save_trace

    try:
        with Store.open(url) as store:
            save_trace(store, observation, summary(location), point)
    except StorageError as exc:
        raise StorageError(f"trace printed but NOT stored: {exc}") from None


def summary(location: Location) -> TraceSummary:
    from storage.traces import TraceSummary

    return TraceSummary(
        location.interference, location.censor_hop, location.censor_address, location.evidence
    )


def traces(
    domain: str | None = typer.Option(None, "--domain", help="Only this domain."),
    jsonl: bool = typer.Option(
        False, "--jsonl", help="Export every stored trace losslessly, one JSON object a line."
    ),
    relocate: bool = typer.Option(
        False, "--relocate", help="Locate the censor again in every stored trace (this release)."
    ),
    db: DbOption = None,
) -> None:
    """List stored traces, export them (--jsonl), or re-run the decision (--relocate)."""
    from probe.observations import rfc3339, to_dict
    from probe.terminal import json_text, printable
    from probe.trace.locate import locate
    from storage.traces import iter_traces
    from storage.traces import relocate as relocate_all

    shown = 0
    with open_store(db, write=relocate, existing=True) as store:  # a mistyped --db: nothing
        if relocate:
            read, changed = relocate_all(store, lambda obs: summary(locate(obs)))
            typer.echo(f"examined {read} trace(s); {changed} location(s) changed")
            return
        for item in iter_traces(store, domain):
            shown += 1
            if jsonl:
                line = {
                    "schema": "probe.trace.stored/1",
                    "id": item.id,
                    "vantage": item.vantage,
                    "measurement_id": item.measurement_id,
                    **dataclasses.asdict(item.summary),
                    "observation": to_dict(item.observation),
                }
                print(json_text(line))
                continue
            s, obs = item.summary, item.observation
            hop = "-" if s.censor_hop is None else f"hop {s.censor_hop} {s.censor_address or '*'}"
            found = s.interference or ("no interference" if obs.address else "not traced")
            print(
                printable(
                    f"{item.id[:8]}  {rfc3339(obs.started_at)}  {item.vantage}  "
                    f"{obs.domain}  {found}  {hop}"
                )
            )
    if not shown and not jsonl:
        typer.echo(f"no traces stored{f' of {domain}' if domain else ''}", err=True)
