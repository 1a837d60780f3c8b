"""``probe trace``: locate the censor on the path and fingerprint its packets."""

from __future__ import annotations

import typer

from probe.errors import ExitStatus, UsageError


def register(app: typer.Typer) -> None:
    app.command(name="trace", no_args_is_help=True)(trace)


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
) -> None:
    """Find the hop where DOMAIN is interfered with, and whether its resets are forged.

    Needs raw sockets (root or CAP_NET_RAW). Exit status: 0 no interference,
    1 interference found, 2 bad usage or input, 77 no raw sockets.
    """
    import json

    from probe.checks.dns import parse_resolver, system_resolver
    from probe.targets import normalize_domain
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
        print(json.dumps(to_json(observation, location)), flush=True)
    else:
        print(text(observation, location), flush=True)
    if location.interference is not None:
        raise typer.Exit(int(ExitStatus.BLOCKED))


def _readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"--ca-bundle {path}: cannot read: {exc.strerror}") from None
