"""The ``probe`` command line.

Each sub-module registers its commands on :data:`app` and imports anything
heavy inside the command body, so ``probe --help`` stays fast on a Pi.
:func:`main` is the only way out: user errors become one line on stderr and
a documented exit status (see :class:`probe.errors.ExitStatus`).
"""

from __future__ import annotations

import logging
import sys

import typer

from probe import __version__
from probe.errors import ExitStatus, ProbeError

app = typer.Typer(
    name="probe",
    help="Measure whether, and how, a platform is blocked from this network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: importing rich costs ~0.2 s on every start
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reachprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose:  # our progress, not every library's debug output (matplotlib's fonts...)
        for package in ("probe", "storage", "schedules", "collectors"):
            logging.getLogger(package).setLevel(logging.DEBUG)


def _register() -> None:
    from probe.cli import check

    check.register(app)
    for name in ("data", "timeline", "daemon", "helper", "trace", "collector", "upload"):
        try:
            module = __import__(f"probe.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"probe.cli.{name}":
                raise
            continue
        module.register(app)


def fail(message: str, status: ExitStatus) -> None:
    """Print ``probe: message`` on one line and exit with ``status``."""
    first_line = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"probe: {first_line}", file=sys.stderr)
    raise SystemExit(int(status))


def main() -> None:
    _register()
    try:
        status = app(standalone_mode=False)
    except ProbeError as exc:
        fail(str(exc), exc.exit_status)
    except KeyboardInterrupt:
        fail("interrupted", ExitStatus.INTERRUPTED)
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: a bug, not a user error
        _last_resort(exc)
    if status == ExitStatus.INTERRUPTED:  # typer turns Ctrl-C into a silent exit status
        fail("interrupted", ExitStatus.INTERRUPTED)
    raise SystemExit(status if isinstance(status, int) else 0)


def _last_resort(exc: Exception) -> None:
    """Usage errors from the parser become one line; anything else is a bug.

    Typer vendors its own copy of click, so its exceptions are recognised by
    shape (``format_message``/``exit_code``) rather than by class.
    """
    format_message = getattr(exc, "format_message", None)
    if callable(format_message):
        fail(str(format_message()), ExitStatus.USAGE)
    name = type(exc).__name__
    if name == "Exit":
        raise SystemExit(int(getattr(exc, "exit_code", 0))) from None
    if name == "Abort":
        fail("interrupted", ExitStatus.INTERRUPTED)
    logging.getLogger("probe").debug("internal error", exc_info=exc)
    fail(
        f"internal error ({name}: {exc}); rerun with -v and report it",
        ExitStatus.INTERNAL,
    )
