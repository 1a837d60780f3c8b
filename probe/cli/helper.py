"""``probe helper serve``: run a control helper (OONI's test-helper protocol).

Deploy it outside the censored country (docs/deploy.md); probes name it
with ``probe check --helper URL``.  Exit status: 0 after a clean stop, 2 for
bad options or files, 130 when interrupted before serving.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from probe.errors import UsageError

if TYPE_CHECKING:
    from probe.helper.asn import ASNDatabase


def register(app: typer.Typer) -> None:
    helper_app = typer.Typer(name="helper", help="Run a control helper for other probes.")
    helper_app.command(name="serve")(serve)
    app.add_typer(helper_app)


def serve(
    listen: str = typer.Option(
        "127.0.0.1:8080", "--listen", metavar="HOST:PORT", help="Address to listen on (an IP)."
    ),
    resolver: str | None = typer.Option(
        None, "--resolver", metavar="IP[:PORT]", help="Resolver to use (default: the system's)."
    ),
    ca_bundle: str | None = typer.Option(
        None, "--ca-bundle", metavar="PEM", help="Extra trusted CA certificates."
    ),
    allow_private: bool = typer.Option(
        False,
        "--allow-private",
        help="Dial private and special-purpose addresses (labs only: makes it an open door "
        "into the helper's own network).",
    ),
    tls_cert: str | None = typer.Option(None, "--tls-cert", metavar="PEM", help="Serve HTTPS."),
    tls_key: str | None = typer.Option(None, "--tls-key", metavar="PEM", help="Its key."),
    token_file: str | None = typer.Option(
        None,
        "--token-file",
        metavar="FILE",
        help="Require 'Authorization: Bearer TOKEN' with one of the tokens in FILE (one a line).",
    ),
    asn_db: str | None = typer.Option(
        None,
        "--asn-db",
        metavar="FILE",
        help="IP->ASN database for ip_info: a MaxMind-format .mmdb or the iptoasn TSV (.gz ok).",
    ),
    timeout: float = typer.Option(8.0, "--timeout", metavar="SECONDS", help="Time per request."),
    max_endpoints: int = typer.Option(64, "--max-endpoints", help="Endpoints per request."),
    rate: int = typer.Option(30, "--rate", help="Requests per minute per client address."),
) -> None:
    """Measure URLs for probes from outside the censor (POST / in OONI's protocol)."""
    from probe.checks import dns, tls
    from probe.cli.daemon import _journal_logging
    from probe.helper.measure import HelperSettings
    from probe.helper.protocol import split_endpoint
    from probe.helper.server import Limits
    from probe.helper.server import serve as run_server

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError:
        raise UsageError(
            "probe helper serve needs the web stack: pip install 'reachprobe[helper]'"
        ) from None
    where = split_endpoint(listen)
    if where is None:
        raise UsageError(f"invalid --listen {listen!r}: give IP:PORT, e.g. 0.0.0.0:8080")
    if not 0 < timeout <= 60:
        raise UsageError(f"invalid --timeout {timeout}: give seconds between 0 and 60")
    if max_endpoints < 1 or rate < 1:
        raise UsageError("--max-endpoints and --rate must be at least 1")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls.make_context(ca_bundle)  # a bad bundle fails now, in one line
    settings = HelperSettings(
        resolver=dns.parse_resolver(resolver) if resolver else dns.system_resolver(),
        timeout=timeout,
        ca_bundle=ca_bundle,
        allow_private=allow_private,
        asn=_asn(asn_db),
    )
    _journal_logging()  # its line per request, as the docs promise, also without -v
    run_server(
        settings,
        where[0],
        where[1],
        tokens=_tokens(token_file),
        limits=Limits(max_endpoints=max_endpoints, per_client=rate),
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


def _tokens(path: str | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8") as handle:
            tokens = tuple(line.strip() for line in handle if line.strip())
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read token file {path}: not UTF-8 text") from None
    if not tokens:
        raise UsageError(f"token file {path} holds no token")
    return tokens


def _asn(path: str | None) -> ASNDatabase | None:
    if path is None:
        return None
    from probe.helper.asn import open_database

    return open_database(path)
