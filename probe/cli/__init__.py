"""The ``probe`` command line.

Each sub-module registers its commands on :data:`app` and imports anything
heavy inside the command body, so ``probe --help`` stays fast on a Pi.
:func:`main` is the only way out: user errors become one line on stderr and
a documented exit status (see :class:`probe.errors.ExitStatus`).
"""

from __future__ import annotations

import errno
import logging
import os
import sys

import typer

from probe import __version__
from probe.errors import ExitStatus, ProbeError

EXAMPLES = """Examples:

\b
  probe check --platform x          can people on this network use X?
  probe check x.com -d              one domain, with the per-endpoint table
  probe explain tls.reset           what a method or trigger means, in plain words
  probe platforms                   the platform profiles and their domains
  probe report --domain x.com       blocked share per endpoint over time
  probe init                        set up scheduled probing (docs/deploy.md)
"""

app = typer.Typer(
    name="probe",
    help="Measure whether, and how, a platform is blocked from this network.",
    epilog=EXAMPLES,
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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log the probe's progress to stderr (also after a command)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose:  # our progress, not every library's output (matplotlib's fonts, httpx's requests)
        for package in OWN_LOGGERS:
            logging.getLogger(package).setLevel(logging.DEBUG)


OWN_LOGGERS = ("probe", "storage", "schedules", "collectors")
_VERBOSE = ("-v", "--verbose")


def _hoist_verbose(args: list[str]) -> list[str]:
    """``probe check x.com -v`` means ``probe -v check x.com`` (only the root takes -v)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in _VERBOSE]
    return [*flags[:1], *(a for a in args[:end] if a not in _VERBOSE), *args[end:]]


def _register() -> None:
    from probe.cli import check

    check.register(app)
    for name in ("data", "timeline", "daemon", "helper", "trace", "collector", "upload", "explain"):
        try:
            module = __import__(f"probe.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"probe.cli.{name}":
                raise
            continue
        module.register(app)


def _only(command: str | None) -> None:
    """Keep only the top-level command about to run on :data:`app`.

    Typer turns every registered function into a click command (reading
    signatures and type hints) before parsing anything; for one command that
    work is wasted on the other two dozen, about a tenth of a one-off check's
    CPU on a Pi.  Without a known command name (``probe``, ``probe --help``,
    a typo that needs suggestions) everything stays, so help and errors are
    unchanged; so it does on an app without a root callback, which Typer
    would turn into that lone command.
    """
    if app.registered_callback is None:
        return
    from typer.main import get_command_name, solve_typer_info_defaults

    def name(info: typer.models.CommandInfo) -> str | None:
        if info.name:
            return info.name
        return get_command_name(info.callback.__name__) if info.callback else None

    commands = [c for c in app.registered_commands if name(c) == command]
    groups = [g for g in app.registered_groups if solve_typer_info_defaults(g).name == command]
    if len(commands) + len(groups) == 1:
        app.registered_commands, app.registered_groups = commands, groups


def _command_of(args: list[str]) -> str | None:
    """The top-level command ``args`` run, if nothing but ``-v`` comes before it."""
    for arg in args:
        if arg not in _VERBOSE:
            return None if arg.startswith("-") else arg
    return None


def fail(message: str, status: ExitStatus) -> None:
    """Print ``probe: message`` on one line and exit with ``status``."""
    first_line = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"probe: {first_line}", file=sys.stderr)
    raise SystemExit(int(status))


def main() -> None:
    _register()
    args = _hoist_verbose(sys.argv[1:])
    _only(_command_of(args))
    stdout = sys.stdout
    try:
        status = app(args=args, prog_name="probe", standalone_mode=False)
    except ProbeError as exc:
        fail(str(exc), exc.exit_status)
    except KeyboardInterrupt:
        fail("interrupted", ExitStatus.INTERRUPTED)
    except SystemExit:
        if _pacified(stdout):  # typer's answer to EPIPE: a silent exit 1, read as "blocked"
            _cannot_write(OSError(errno.EPIPE, os.strerror(errno.EPIPE)))
        raise
    except OSError as exc:
        if exc.errno not in _UNWRITABLE:
            _last_resort(exc)
        _cannot_write(exc)
    except Exception as exc:  # the last line of defence: a bug, not a user error
        _last_resort(exc)
    if status == ExitStatus.INTERRUPTED:  # typer turns Ctrl-C into a silent exit status
        fail("interrupted", ExitStatus.INTERRUPTED)
    raise SystemExit(status if isinstance(status, int) else 0)


# Errors only a write gives: the disk (or quota, or file size limit) is full, or
# the reader went away (`probe check --json --list L | head -1`; Python ignores
# SIGPIPE, so the write fails with EPIPE).
_UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE})


def _pacified(stdout: object) -> bool:
    """Whether click swapped stdout for its wrapper that swallows flush errors:
    it does so only when a write failed with EPIPE, then exits 1 without a word."""
    return sys.stdout is not stdout and type(sys.stdout).__name__.endswith("PacifyFlushWrapper")


def _cannot_write(exc: OSError) -> None:
    """A full disk under the output (``probe export csv > out.csv``) or a pipe
    whose reader left is one line and exit 2, like any other output that cannot
    be written: not a bug.  A check's domains were stored before they were
    printed, so what was measured is kept; the rest of a list is not checked."""
    try:  # what stdout still holds would fail again, with a traceback, at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
    except (OSError, ValueError):
        pass
    fail(f"cannot write {exc.filename or 'the output'}: {exc.strerror}", ExitStatus.USAGE)


def _last_resort(exc: Exception) -> None:
    """Usage errors from the parser become one line; anything else is a bug.

    Typer vendors its own copy of click, so its exceptions are recognised by
    shape (``format_message``/``exit_code``) rather than by class.
    """
    format_message = getattr(exc, "format_message", None)
    name = type(exc).__name__
    if name == "NoArgsIsHelpError" and callable(format_message):
        print(format_message())  # the whole help: commands, options and examples
        raise SystemExit(int(ExitStatus.USAGE)) from None
    if callable(format_message):
        fail(str(format_message()), ExitStatus.USAGE)
    if name == "Exit":
        raise SystemExit(int(getattr(exc, "exit_code", 0))) from None
    if name == "Abort":
        fail("interrupted", ExitStatus.INTERRUPTED)
    logging.getLogger("probe").debug("internal error", exc_info=exc)
    fail(
        f"internal error ({name}: {exc}); rerun with -v and report it",
        ExitStatus.INTERNAL,
    )
