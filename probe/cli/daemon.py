"""``probe init``, ``probe config check``, ``probe run`` and ``probe status``: the
scheduled probe on a VPS or a Raspberry Pi (see docs/deploy.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from probe.errors import ConfigError, StorageError, UsageError

if TYPE_CHECKING:
    from probe.config import Config
    from schedules.state import DaemonState
    from storage.store import Store

DEFAULT_CONFIG = "reachprobe.toml"
CONFIG_ENV = "REACHPROBE_CONFIG"

_CONFIG_OPTION = typer.Option(
    DEFAULT_CONFIG,
    "--config",
    "-c",
    envvar=CONFIG_ENV,
    metavar="FILE",
    help=f"Daemon config file (${CONFIG_ENV}); keys can be overridden by REACHPROBE_* variables.",
)


def register(app: typer.Typer) -> None:
    app.command(name="init")(init)
    config_app = typer.Typer(name="config", help="Check the daemon configuration.")
    config_app.command(name="check")(config_check)
    app.add_typer(config_app)
    app.command(name="run")(run)
    app.command(name="status")(status)


def init(
    path: str = typer.Argument(DEFAULT_CONFIG, metavar="[FILE]", help="Where to write the config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    vantage: str | None = typer.Option(
        None,
        "--vantage",
        help="Name of this vantage point, stored with every measurement (asked when run in "
        "a terminal; default: a neutral generated name, never the host name).",
    ),
) -> None:
    """Write a commented daemon config to edit (default: ./reachprobe.toml)."""
    from probe.cli.check import generated_vantage_name
    from probe.config import example_config, vantage_name

    target = Path(path)
    if path == "-":  # not stdout: a config is a file the daemon reads later
        raise UsageError("give the config file's path, not '-'")
    if target.exists() and not target.is_file():  # --force must not chmod /dev/null
        raise UsageError(f"{path} exists and is not a regular file")
    if target.exists() and not force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    if vantage is None:
        vantage = generated_vantage_name()
        if sys.stdin.isatty():
            typer.echo(
                "Every measurement stores this vantage's name; choose one that does not "
                "identify you (see docs/deploy.md, 'What running a probe reveals')."
            )
            vantage = typer.prompt("vantage name", default=vantage)
    try:
        name = vantage_name(vantage)
    except ValueError as exc:
        raise UsageError(f"invalid vantage name {vantage!r}: {exc}") from None
    if any(c in name for c in '"\\'):  # it goes into the TOML template as it is
        raise UsageError(f"invalid vantage name {vantage!r}: no quotes or backslashes")
    text = example_config().replace('name = "my-probe"', f'name = "{name}"', 1)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # 0600: the config may come to hold a PostgreSQL password.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # also when --force rewrites an existing file
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    typer.echo(
        f'wrote {path} (vantage "{name}"): edit [vantage], then run '
        f"`probe config check --config {path}`"
    )


def config_check(
    config: str = _CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the effective config as JSON."),
) -> None:
    """Validate the config (syntax, keys, values, targets); exit 2 on the first error."""
    from probe.config import config_warnings, describe, load_config, resolve_targets

    loaded = load_config(config)
    for warning in config_warnings(loaded):
        typer.echo(f"{config}: warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(describe(loaded), indent=2, default=str))
        return
    targets = resolve_targets(loaded)
    schedule = loaded.schedule
    names = ", ".join(t.domain for t in targets)
    typer.echo(
        f"{config}: ok: {len(targets)} target{'' if len(targets) == 1 else 's'} ({names}), "
        f"every {schedule.interval_s:g} s + up to {schedule.jitter_s:g} s jitter, "
        f"metrics {'on ' + str(loaded.metrics.listen) if loaded.metrics.listen else 'off'}"
    )


def run(config: str = _CONFIG_OPTION) -> None:
    """Check every configured target on its schedule until SIGTERM/SIGINT."""
    from probe.config import config_warnings, load_config, upload_token_missing
    from schedules.daemon import run as run_daemon

    loaded = load_config(config)
    missing = upload_token_missing(loaded)
    if missing is not None:
        raise ConfigError(f"{config}: {missing}")
    _journal_logging()
    for warning in config_warnings(loaded):
        logging.getLogger("probe").warning("%s", warning)
    raise typer.Exit(run_daemon(loaded))


def status(
    config: str = _CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    health: bool = typer.Option(
        False,
        "--health",
        help="Print nothing; exit 0 if the daemon runs and no target is overdue, else 1 "
        "(for container health checks; does not open the database).",
    ),
) -> None:
    """Show the daemon's state, each target's last result and its next run."""
    from probe.config import load_config

    loaded = load_config(config)
    if health:
        from schedules.daemon import health_problem

        problem = health_problem(loaded)
        if problem:
            typer.echo(f"unhealthy: {problem}", err=True)
            raise typer.Exit(1)
        return
    report = _status(loaded)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    daemon = report["daemon"]
    line = "running" if daemon["running"] else "not running"
    if daemon["running"] and daemon["started_at"]:
        line += f" since {daemon['started_at']} (pid {daemon['pid']})"
    elif daemon["stopped_uncleanly"]:
        line += f": {daemon['stopped_uncleanly']}; it had started {daemon['started_at']}"
        if daemon["cut_short"]:
            cut = ", ".join(daemon["cut_short"])
            line += f"; check(s) cut short, re-run at the next start: {cut}"
    elif daemon["stopped_at"]:
        line += f", stopped {daemon['stopped_at']}"
    typer.echo(f"daemon: {line}; state {daemon['state_file']}")
    upload = report.get("upload")
    if upload is not None:
        last = upload["last_success"] or "never"
        line = f"upload: {upload['backlog']} measurement(s) not yet confirmed by {upload['url']}"
        line += f"; last successful upload {last}"
        if upload["last_error"]:
            line += f"; last attempt failed: {upload['last_error']}"
        typer.echo(line)
    header = ("TARGET", "LAST MEASUREMENT", "VERDICT", "BLOCKING", "LAST RUN", "NEXT RUN")
    rows = [header]
    for t in report["targets"]:
        last_run = t["last_outcome"] or "-"
        if t["last_outcome"] == "failed" and t["last_error"]:
            last_run = f"failed: {t['last_error']}"
        if t["domain"] in daemon["cut_short"]:
            last_run = "cut short (the daemon died mid-check)"
        rows.append(
            (
                t["domain"],
                t["measured_at"] or "never",
                t["verdict"] or "-",
                ",".join(t["blocking"]) or "-",
                last_run,
                t["next_run"] or "-",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths, strict=False)]
        typer.echo("  ".join([*cells, str(r[-1])]).rstrip())


def _status(config: Config) -> dict[str, Any]:
    from probe.config import resolve_targets
    from probe.observations import rfc3339
    from schedules.daemon import after_stop, is_running, state_path
    from schedules.state import StateFile
    from storage.database import NoDatabase
    from storage.records import MeasurementFilter
    from storage.store import Store

    def when(value: Any) -> str | None:
        return rfc3339(value) if value is not None else None

    path = state_path(config)
    state = StateFile(path).load()
    targets = []
    try:  # read only: a status run where the daemon stores nothing must not create a database
        opened = Store.open(config.storage.url, readonly=True)
    except NoDatabase as exc:
        raise StorageError(
            f"no database at {exc.path}: the daemon has stored nothing there (its [storage] "
            "url says where it stores; under systemd, give STATE_DIRECTORY as its unit does)"
        ) from None
    with opened as store:
        for target in resolve_targets(config):
            row = next(store.iter_rows(MeasurementFilter(domain=target.domain, limit=1)), None)
            t = state.targets.get(target.domain)
            targets.append(
                {
                    "domain": target.domain,
                    "platform": target.platform,
                    "measured_at": when(row.started_at) if row else None,
                    "verdict": row.verdict if row else None,
                    "blocking": list(row.blocking) if row else [],
                    "measurement": row.id if row else None,
                    "last_outcome": t.last_outcome if t else None,
                    "last_error": t.last_error if t else None,
                    "interrupted": t.interrupted if t else 0,
                    "failed": t.failed if t else 0,
                    "next_run": when(t.next_run) if t else None,
                }
            )
        upload = _upload_status(config, store, state) if config.upload.url else None
    running = is_running(config)
    if not running:
        state = after_stop(config, state)
    died = not running and state.stop_unrecorded
    cut_short = sorted(d for d, t in state.targets.items() if t.unfinished) if died else []
    return {
        "upload": upload,
        "daemon": {
            "running": running,
            "pid": state.pid if running else None,
            "started_at": when(state.started_at),
            "stopped_at": when(state.stopped_at),
            "stopped_uncleanly": state.unclean_stop() if died else None,
            "cut_short": cut_short,
            "state_file": str(path),
        },
        "targets": targets,
    }


def _upload_status(config: Config, store: Store, state: DaemonState) -> dict[str, Any]:
    """Backlog from the database; the last success the later of the daemon's and the
    database's (`probe upload` by hand); the daemon's failure unless a success came after."""
    from probe.observations import rfc3339
    from storage.outbox import Outbox

    assert config.upload.url is not None
    outbox = Outbox(store.database, config.upload.url, vantage=config.vantage.name)
    successes = [t for t in (state.upload_last_success, outbox.last_upload()) if t is not None]
    last = max(successes, default=None)
    error = state.upload_last_error
    attempt = state.upload_last_attempt
    if last is not None and attempt is not None and attempt <= last:
        error = None  # an upload after it worked
    return {
        "url": outbox.collector,
        "backlog": outbox.backlog(),
        "last_success": rfc3339(last) if last else None,
        "last_error": error,
    }


class _JournalFormatter(logging.Formatter):
    """``<PRIORITY>logger: message`` under systemd, which adds time and unit
    itself (SyslogLevelPrefix); ISO time and level elsewhere (docker logs)."""

    _PRIORITY = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, journal: bool) -> None:
        fmt = (
            "%(name)s: %(message)s"
            if journal
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt, datefmt="%Y-%m-%dT%H:%M:%S%z")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.journal:
            priority = self._PRIORITY.get(record.levelno, 6)
            # One journal entry per line: keep tracebacks in one entry's lines.
            return "\n".join(f"<{priority}>{line}" for line in text.splitlines())
        return text


def _journal_logging() -> None:
    verbose = logging.getLogger("probe").isEnabledFor(logging.DEBUG)  # probe -v run
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JournalFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # APScheduler logs every run, alembic every migration step and httpx every
    # request at INFO; our own lines already say what matters.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for noisy in ("httpx", "httpcore"):  # one line per request even with -v: never
        logging.getLogger(noisy).setLevel(logging.WARNING)
