"""``probe upload``: send this probe's unconfirmed measurements to a collector.

Exit status: 0 every measurement of this vantage is confirmed by the
collector; 2 bad usage (URL, empty token, unreadable CA bundle); 4 the local database failed;
5 the collector is unreachable or busy, refused the token, or rejected a
batch (the line says which).  Whatever was confirmed before a failure stays
confirmed; running the command again continues from there.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from probe.cli.data import DbOption


def register(app: typer.Typer) -> None:
    app.command("upload")(upload)


def upload(
    collector: Annotated[
        str,
        typer.Option(
            "--collector",
            envvar="REACHPROBE_UPLOAD_URL",
            metavar="URL",
            help="The collector, e.g. https://collector.example.org ($REACHPROBE_UPLOAD_URL).",
        ),
    ],
    token: Annotated[
        str,
        typer.Option(
            envvar="REACHPROBE_UPLOAD_TOKEN",
            help="This vantage's upload token ($REACHPROBE_UPLOAD_TOKEN keeps it out of `ps`).",
        ),
    ],
    db: DbOption = None,
    batch: Annotated[int, typer.Option(min=1, max=5000, help="Measurements per request.")] = 500,
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
    from storage.store import Store

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
                store, collector, token, batch_size=batch, progress=progress, timeout=timeout,
                ca_bundle=ca_bundle, resend=resend,
            )  # fmt: skip
    finally:
        if shown:
            print(file=sys.stderr)
    note = f"; {result.others} of other vantages not uploaded" if result.others else ""
    typer.echo(
        f"uploaded {result.sent} measurement(s) of vantage {result.vantage}: "
        f"{result.added} new, {result.duplicates} already at the collector{note}"
    )
