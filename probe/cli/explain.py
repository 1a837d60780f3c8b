"""``probe explain TERM`` and ``probe platforms``: the words and the profiles.

Both only read shipped data (probe.glossary, the platform profiles), so they
work before anything was measured.
"""

from __future__ import annotations

import typer

from probe.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command(name="explain")(explain)
    app.command(name="platforms")(platforms)


def explain(
    terms: list[str] = typer.Argument(
        None, metavar="[TERM...]", help="A verdict, method or trigger, e.g. tls.reset or sni."
    ),
) -> None:
    """Say in plain words what a verdict, blocking method or trigger means.

    Without a term, list them all (the glossary in docs/methodology.md).
    """
    from probe.glossary import TERMS, term

    if not terms:
        width = max(map(len, TERMS))
        for known in TERMS.values():
            typer.echo(f"{known.name:<{width}}  {known.short}")
        typer.echo("\nprobe explain TERM says more about one of them.")
        return
    for name in terms:
        entry = term(name)
        if entry is None:
            raise UsageError(f"unknown term {name!r}; `probe explain` lists them all")
        typer.echo(f"{entry.name} ({entry.short}): {entry.plain}")


def platforms() -> None:
    """List the platform profiles `probe check --platform NAME` knows, with their domains."""
    from probe.targets import load_platforms

    for p in load_platforms().values():
        typer.echo(f"{p.name:<10} {p.title}")
        for domain in p.domains:
            role = "core" if domain in p.required else "media" if domain in p.media else ""
            typer.echo(f"{'':<10}   {domain:<28} {role}".rstrip())
