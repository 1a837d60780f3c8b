"""``probe collector serve`` and ``probe collector vantage add|list|revoke``: the
collector that many probes upload to (see docs/deploy.md).

The web stack is imported inside ``serve`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from probe.cli.data import DbOption, open_store
from probe.errors import UsageError

if TYPE_CHECKING:
    import socket


def register(app: typer.Typer) -> None:
    collector = typer.Typer(help="Run a collector that many probes upload to.")
    collector.command("serve")(serve)
    vantage = typer.Typer(help="Register vantages and their upload tokens.")
    vantage.command("add")(vantage_add)
    vantage.command("list")(vantage_list)
    vantage.command("revoke")(vantage_revoke)
    collector.add_typer(vantage, name="vantage", no_args_is_help=True)
    app.add_typer(collector, name="collector", no_args_is_help=True)


def serve(
    db: DbOption = None,
    listen: Annotated[
        str, typer.Option(metavar="HOST:PORT", help="Address to listen on.")
    ] = "127.0.0.1:8500",
    tls_cert: Annotated[
        Path | None, typer.Option(metavar="PEM", help="Serve HTTPS with this certificate chain.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(metavar="PEM", help="Its private key.")] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, metavar="BYTES", help="Largest accepted batch body.")
    ] = 32 * 1024 * 1024,
    max_batch: Annotated[
        int, typer.Option(min=1, help="Most measurements accepted in one batch.")
    ] = 5000,
    rate: Annotated[
        float, typer.Option(min=0, help="Uploads per second per vantage (0: unlimited).")
    ] = 5.0,
    public: Annotated[
        bool,
        typer.Option(
            "--public/--private",
            help="Dashboard at / readable by anyone, or only with the reader token "
            "in $REACHPROBE_DASHBOARD_TOKEN.",
        ),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(min=1, max=64, help="Server processes on the one address (one per core)."),
    ] = 1,
) -> None:
    """Receive uploads from probes into the database until SIGTERM/SIGINT; dashboard at /."""
    from probe.cli.daemon import _journal_logging
    from probe.config import _split_listen

    try:
        host, port = _split_listen(listen)
    except ValueError as exc:
        raise UsageError(f"--listen: {exc}") from None
    from collectors.dashboard import reader_token, routes
    from collectors.server import Settings, create_app
    from collectors.server.serve import bind, check_tls, serve_workers
    from collectors.server.serve import serve as run
    from storage.store import Store

    check_tls(tls_cert, tls_key)
    dashboard = routes(read_token=reader_token(not public))
    sock = bind(host, port)
    settings = Settings(max_body=max_body, max_batch=max_batch, upload_rate=rate)
    _journal_logging()

    def start(
        ready: Callable[[], None] | None = None, handoff: socket.socket | None = None
    ) -> None:
        with Store.open(db) as store:
            app = create_app(store, settings, extra_routes=dashboard)
            run(app, sock, tls_cert=tls_cert, tls_key=tls_key, ready=ready, handoff=handoff)

    if workers == 1:
        start()
        return
    Store.open(db).close()  # migrated once, here, before the workers open it
    serve_workers(start, workers, sock)


def vantage_add(
    name: Annotated[str, typer.Argument(help="Short unique name, e.g. lahore-ptcl.")],
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2, e.g. PK.")] = None,
    asn: Annotated[int | None, typer.Option(min=1, max=4_294_967_295, help="AS number.")] = None,
    network: Annotated[str | None, typer.Option(help="The ISP's name, e.g. PTCL.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free text.")] = None,
    db: DbOption = None,
) -> None:
    """Register a vantage; its upload token is the last line of stdout (shown once)."""
    from probe.config import network_name
    from storage.records import Vantage
    from storage.registry import Registry

    try:
        network = network_name(network)
    except ValueError as e:
        raise UsageError(f"--network {e}") from None
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise UsageError(f"--country must be a two-letter ISO code, not {country!r}")
    vantage = Vantage(name, country.upper() if country else None, asn, network, notes)
    with open_store(db, write=True) as store:
        registration, token = Registry(store.database).add(vantage)
    typer.echo(f"registered vantage {_describe(registration.vantage)}")
    typer.echo("upload token (shown only now; the collector keeps only its hash):")
    typer.echo(token)


def vantage_list(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered vantages (never their tokens)."""
    from probe.observations import rfc3339
    from storage.registry import Registry

    with open_store(db) as store:  # reading: a mistyped --db is an error, not an empty list
        found = Registry(store.database).list()

    def when(value: Any) -> str | None:
        return rfc3339(value) if value is not None else None

    rows: list[dict[str, Any]] = [
        {
            "name": r.vantage.name,
            "country": r.vantage.country,
            "asn": r.vantage.asn,
            "network": r.vantage.network,
            "revoked": r.revoked,
            "created_at": when(r.created_at),
            "last_seen_at": when(r.last_seen_at),
        }
        for r in found
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no registered vantages", err=True)
        return
    header = ("NAME", "COUNTRY", "ASN", "NETWORK", "TOKEN", "LAST UPLOAD")
    table: list[tuple[str, ...]] = [header]
    for r in rows:
        asn = f"AS{r['asn']}" if r["asn"] else "-"
        status = "revoked" if r["revoked"] else "active"
        cells = (r["name"], r["country"] or "-", asn, r["network"] or "-", status)
        table.append((*(_printable(str(c)) for c in cells), r["last_seen_at"] or "never"))
    widths = [max(len(str(t[i])) for t in table) for i in range(len(header))]
    for t in table:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(t, widths, strict=True)).rstrip())


def vantage_revoke(
    name: Annotated[str, typer.Argument(help="The vantage whose token to revoke.")],
    db: DbOption = None,
) -> None:
    """Revoke a vantage's token for good (its measurements stay)."""
    from storage.registry import Registry

    with open_store(db, write=True, existing=True) as store:  # a mistyped --db: nothing
        registration = Registry(store.database).revoke(name)
    typer.echo(f"revoked the token of vantage {registration.vantage.name}; its measurements stay")


def _describe(vantage: Any) -> str:
    bits = [
        b
        for b in (
            vantage.country,
            f"AS{vantage.asn}" if vantage.asn else None,
            vantage.network,
        )
        if b
    ]
    text = vantage.name + (f" ({', '.join(bits)})" if bits else "")
    return _printable(text)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
