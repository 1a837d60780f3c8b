"""A command run by name is built alone, and exactly as in the full command line.

``probe check x.com`` builds only ``check`` (the one-off check's start-up
cost on a Pi); these tests hold that its help, options and arguments are the
ones ``probe --help`` would have led to, for every top-level command.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
import typer.main
from typer._click import Context

import probe.cli as cli
from tests.test_quality import HEAVY


@pytest.fixture
def app() -> Iterator[typer.Typer]:
    if not cli.app.registered_commands:
        cli._register()
    commands, groups = list(cli.app.registered_commands), list(cli.app.registered_groups)
    yield cli.app
    cli.app.registered_commands, cli.app.registered_groups = commands, groups


def described(command: Any, ctx: Any) -> Any:
    """The command's help text, its parameters, and the same for its subcommands."""
    params = [
        (p.name, p.opts, p.secondary_opts, p.default, p.required, p.nargs, p.envvar, p.type.name)
        for p in command.params
    ]
    subcommands = {
        name: described(sub, Context(sub, info_name=name, parent=ctx))
        for name, sub in getattr(command, "commands", {}).items()
    }
    return command.get_help(ctx), params, subcommands


def top(group: Any, name: str) -> Any:
    root = Context(group, info_name="probe")
    command = group.commands[name]
    return described(command, Context(command, info_name=name, parent=root))


def test_each_command_alone_is_the_same_command(app: typer.Typer) -> None:
    full = typer.main.get_command(app)
    names = list(full.commands)  # type: ignore[attr-defined]
    assert {"check", "run", "report", "export", "collector"} <= set(names)
    commands, groups = list(app.registered_commands), list(app.registered_groups)
    for name in names:
        app.registered_commands, app.registered_groups = list(commands), list(groups)
        cli._only(name)
        alone = typer.main.get_command(app)
        assert list(alone.commands) == [name]  # type: ignore[attr-defined]
        assert top(alone, name) == top(full, name), name


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["check", "x.com"], "check"),
        (["-v", "check", "x.com", "--json"], "check"),
        (["--help", "check"], None),
        (["--version"], None),
        ([], None),
        (["db", "upgrade"], "db"),
    ],
)
def test_command_named_by_the_arguments(argv: list[str], command: str | None) -> None:
    assert cli._command_of(cli._hoist_verbose(argv)) == command


def test_unknown_or_no_command_keeps_everything(app: typer.Typer) -> None:
    before = len(app.registered_commands), len(app.registered_groups)
    cli._only("chek")
    cli._only(None)
    assert (len(app.registered_commands), len(app.registered_groups)) == before


def run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_command_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, probe.cli as c; sys.argv = ['probe', 'check', '--help']\n"
        "try: c.main()\nexcept SystemExit: pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Usage: probe check" in done.stdout
    assert HEAVY.isdisjoint(done.stderr.split()), sorted(HEAVY.intersection(done.stderr.split()))


def test_measuring_code_is_loaded_then_frozen() -> None:
    code = (
        "import gc, sys, probe.cli.check as c; c._load_measuring_code();"
        "print(gc.isenabled(), gc.get_freeze_count() > 10000,"
        " all(m in sys.modules for m in c.MEASURING_MODULES))"
    )
    assert run_python(code).split() == ["True", "True", "True"]


def test_the_json_line_encoder_is_loaded_before_the_first_domain_only_for_json() -> None:
    """Imported on the event loop by the first finished domain, it held the
    domains still in flight for ~10 ms; a table-printing check does not need it."""
    code = (
        "import sys, probe.cli.check as c; c._load_measuring_code({});"
        "print('msgspec.json' in sys.modules)"
    )
    assert run_python(code.format("c.JSON_MODULES")).strip() == "True"
    assert run_python(code.format("")).strip() == "False"


def test_a_plain_check_imports_neither_dnspython_nor_cryptography() -> None:
    """dnspython is imported only for a query or reply that ``probe.checks.dnswire``
    declines, ``cryptography`` only for a certificate ``probe.checks.certwire``
    declines (each was about a seventh of a one-off check's CPU when always imported)."""
    ca = trustme.CA()
    der = ssl.PEM_cert_to_DER_cert(ca.issue_cert("x.com").cert_chain_pems[0].bytes().decode())
    code = (
        "import sys, probe.cli.check as c; c._load_measuring_code()\n"
        "from probe.checks import dns, doh, tls\n"
        "q = dns.Asked.new('x.com', 'A')\n"
        "answer = bytes.fromhex('c00c00010001 0000003c 0004 0a000001')\n"
        "reply = q.wire[:2] + bytes.fromhex('8180 0001 0001 0000 0000') + q.wire[12:23] + answer\n"
        f"cert = tls.certificate(bytes.fromhex('{der.hex()}'))\n"
        "print(q.read(reply)[1:], cert.sans,"
        " sorted(m for m in sys.modules if m.split('.')[0] in ('dns', 'cryptography')))"
    )
    assert run_python(code).strip() == (
        "('NOERROR', (DNSRecord(rtype='A', name='x.com', value='10.0.0.1', ttl=60),)) ('x.com',) []"
    )
