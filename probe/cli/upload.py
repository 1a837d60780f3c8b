"""``probe upload``: send this probe's unconfirmed measurements to a collector.

``-c FILE`` reads the collector, token, batch size, CA bundle and database
from the daemon's config (``[upload]`` and ``[storage]``); options given on
the command line win; a token registered under another name than the config's
``[vantage] name`` is refused (exit 5), as the daemon refuses it.

Exit status: 0 every measurement of this vantage is confirmed by the
collector; 2 bad usage (URL, empty or missing token, unreadable CA bundle or
config); 4 the local database failed;
5 the collector is unreachable or busy, refused the token, or rejected a
batch (the line says which).  Whatever was confirmed before a failure stays
confirmed; running the command again continues from there.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from probe.cli.data import ConfigOption, DbOption
from probe.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("upload")(upload)


def upload(
    collector: Annotated[
        str | None,
        typer.Option(
            "--collector",
            envvar="REACHPROBE_UPLOAD_URL",
            metavar="URL",
            help="The collector, e.g. https://collector.example.org ($REACHPROBE_UPLOAD_URL; "
            "default: the config's [upload] url).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="REACHPROBE_UPLOAD_TOKEN",
            help="This vantage's upload token ($REACHPROBE_UPLOAD_TOKEN keeps it out of `ps`; "
            "default: the config's [upload] token).",
        ),
    ] = None,
    config: ConfigOption = None,
    db: DbOption = None,
    batch: Annotated[
        int | None,
        typer.Option(
            min=1, max=5000, help="Measurements per request (default: the config's, else 500)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds any one network step may take.")
    ] = 30.0,
    ca_bundle: Annotated[
        str | None,
        typer.Option(
            envvar="REACHPROBE_UPLOAD_CA_BUNDLE",
            metavar="PEM",
            help="CA certificates trusted besides the usual ones: a collector with a CA of its "
            "own ($REACHPROBE_UPLOAD_CA_BUNDLE).",
        ),
    ] = None,
    resend: Annotated[
        bool,
        typer.Option(
            "--resend",
            help="Send everything of this vantage again, confirmed or not: for a collector "
            "rebuilt from scratch at the same URL (what it still has counts as duplicates).",
        ),
    ] = False,
) -> None:
    """Upload every measurement the collector has not confirmed (never deletes any)."""
    from collectors.upload import upload as run
    from probe.config import UploadConfig, load_config
    from storage.store import Store

    settings, stored_in, name = UploadConfig(), None, None
    if config is not None:
        loaded = load_config(config)  # a broken config: one line, exit 2
        settings, stored_in = loaded.upload, loaded.storage.url
        name = loaded.vantage.name  # a token of another vantage is refused, as the daemon does
    collector = collector or settings.url
    token = token if token is not None else settings.token
    if not collector:
        raise UsageError("no collector: give --collector URL or [upload] url in the config (-c)")
    if token is None:
        raise UsageError(
            "no upload token: give --token, or upload.token (REACHPROBE_UPLOAD_TOKEN) "
            "with the config (-c)"
        )
    db = db or stored_in
    ca_bundle = ca_bundle or settings.ca_bundle

    tty = sys.stderr.isatty()
    shown = False

    def progress(done: int, total: int) -> None:
        nonlocal shown
        if tty and total:
            print(f"\r{done:,}/{total:,} uploaded", end="", file=sys.stderr, flush=True)
            shown = True

    try:
        with Store.open(db, existing=True) as store:  # a mistyped --db: exit 4
            result = run(
                store, collector, token, batch_size=batch or settings.batch, progress=progress,
                timeout=timeout, ca_bundle=ca_bundle, resend=resend, vantage=name,
            )  # fmt: skip
    finally:
        if shown:
            print(file=sys.stderr)
    note = f"; {result.others} of other vantages not uploaded" if result.others else ""
    typer.echo(
        f"uploaded {result.sent} measurement(s) of vantage {result.vantage}: "
        f"{result.added} new, {result.duplicates} already at the collector{note}"
    )
