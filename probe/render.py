"""How a check is shown: the ``probe.check/1`` JSON object, the compact lines
people read by default, and the per-endpoint table behind ``--details``.

The JSON shape is a public contract (docs/data-format.md): scripts and the
lab tests parse it, so keys are only ever added, never renamed.
"""

from __future__ import annotations

import datetime as dt
import functools
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from probe.glossary import TERMS
from probe.netaddr import endpoint_label
from probe.observations import (
    DNSQuery,
    DomainObservations,
    EndpointObservation,
    HelperObservation,
    HTTPObservation,
    TLSObservation,
    rfc3339,
    to_dict,
)
from probe.summary import blocking_words
from probe.terminal import printable
from probe.verdict import Status, Verdict

SCHEMA = "probe.check/1"


# ---------------------------------------------------------------------- JSON


def check_json(obs: DomainObservations, verdict: Verdict) -> dict[str, Any]:
    """The one-line JSON object ``probe check --json`` prints per domain."""
    return {
        "schema": SCHEMA,
        "domain": obs.domain,
        "input": obs.input,
        "platform": obs.platform,
        "verdict": verdict.status.value,
        "blocking": [m.value for m in verdict.blocking],
        "trigger": verdict.trigger.value if verdict.trigger else None,
        "blockpage": verdict.blockpage,
        "https_ok": verdict.https_ok,
        "reasons": list(verdict.reasons),
        "started_at": rfc3339(obs.started_at),
        "duration_ms": obs.duration_ms,
        "dns": {
            origin: [_query(q) for q in obs.dns if q.origin == origin]
            for origin in ("vantage", "control")
        },
        "endpoints": [_endpoint(e) for e in obs.endpoints if e.port == 443],
        "http": [_plain(e) for e in obs.endpoints if e.port == 80],
        "control": {
            "resolvers": list(obs.settings.control_resolvers),
            "sni": obs.settings.control_sni,
            "sites": [
                {
                    "domain": c.domain,
                    "reachable": c.reachable,
                    "failure": _first_failure(c.dns, c.tcp, c.tls),
                }
                for c in obs.controls
            ],
            "helper": _helper_json(obs.helper),
        },
        "resolver": obs.settings.resolver,
        "notes": [*obs.notes, *verdict.notes],
        "probe_version": obs.probe_version,
        "classifier_version": verdict.classifier_version,
    }


def _helper_json(view: HelperObservation | None) -> dict[str, Any] | None:
    """The helper's answer as stored, plus whether it saw the site working."""
    if view is None:
        return None
    data: dict[str, Any] = to_dict(view)
    data["saw_site"] = view.saw_site
    return data


@functools.cache
def _to_builtins() -> Callable[[Any], Any]:
    """msgspec's ``to_builtins``, imported with the first JSON line (not for the
    human output: the import costs ~10 ms)."""
    import msgspec

    return msgspec.to_builtins


def _step(obs: Any) -> dict[str, Any] | None:
    """A step's observation as :func:`to_dict` gives it (msgspec's ``to_builtins``
    does that walk in C, a fifth of the time; its tuples stay tuples, which JSON
    writes as lists), plus ``ok``, without the body."""
    if obs is None:
        return None
    data: dict[str, Any] = _to_builtins()(obs)
    data["ok"] = obs.ok
    data.pop("body", None)  # kept in storage (probe show), too long for a check line
    return data


def _query(q: DNSQuery) -> dict[str, Any]:
    data = _step(q) or {}
    data["answers"] = list(q.addresses)
    return data


def _where(e: EndpointObservation) -> dict[str, Any]:
    return {
        "address": e.address,
        "port": e.port,
        "origins": list(e.origins),
        "skipped": e.skipped.value if e.skipped else None,
        "tcp": _step(e.tcp),
    }


def _endpoint(e: EndpointObservation) -> dict[str, Any]:
    return {
        **_where(e),
        "tls": _step(e.tls),
        "tls_control_sni": _step(e.tls_control_sni),
        "http": _step(e.http),
        "http_control_sni": _step(e.http_control_sni),
    }


def _plain(e: EndpointObservation) -> dict[str, Any]:
    return {
        **_where(e),
        "http": _step(e.http),
        "http_control_host": _step(e.http_control_host),
    }


def _first_failure(dns: Sequence[DNSQuery], *steps: Any) -> str | None:
    if dns and not any(q.ok for q in dns):
        failure = dns[0].failure
        return f"dns:{failure.value}" if failure else None
    for phase, step in zip(("tcp", "tls"), steps, strict=False):
        if step is not None and step.failure is not None:
            return f"{phase}:{step.failure.value}"
    return None


# ------------------------------------------------------------------- compact


def header_line(started: dt.datetime, vantage: str | None, network: str | None) -> str:
    """``reachprobe check · 2026-12-02 10:41 UTC · vantage quiet-otter · network AS17557 PTCL``."""
    when = started.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    who = f"vantage {vantage}" if vantage else "vantage not stored (--no-store)"
    return f"reachprobe check · {when} · {who} · network {network or 'not set'}"


def check_lines(obs: DomainObservations, verdict: Verdict, *, colour: bool, width: int = 0) -> str:
    """Two lines: the domain, its verdict and the method in plain words; why."""
    status = _status(verdict, colour, width=12)
    if verdict.status is Status.BLOCKED:
        what = blocking_words(verdict)  # the why line says when HTTPS still works
    elif verdict.status is Status.ACCESSIBLE:
        what = ""
    else:
        what = TERMS[verdict.status.value].short
    why = verdict.reasons[0] if verdict.reasons else "no reason recorded"
    more = len(verdict.notes) + len(obs.notes)
    tail = f"  [+{more} note{'s' if more > 1 else ''}: -d]" if more else ""
    head = f"{printable(obs.domain):<{width}}  {status}  {what}".rstrip()
    return f"{head}\n  why: {printable(why)}{tail}"


def redirect_host(obs: DomainObservations) -> str | None:
    """The other host the site's HTTPS answer redirected to, if any (twitter.com -> x.com)."""
    for e in obs.endpoints:
        response = e.http if e.port == 443 else None
        if response is None or not response.redirects:
            continue
        host = urllib.parse.urlsplit(response.redirects[-1].location).hostname
        if host and host != obs.domain and not host.endswith("." + obs.domain):
            return printable(host)
    return None


def _status(verdict: Verdict, colour: bool, width: int = 0) -> str:
    text = f"{verdict.status.value.upper():<{width}}"
    if colour:
        import typer  # typer vendors its own click: there may be no `click` to import

        return typer.style(text, fg=_COLOURS[verdict.status], bold=True)
    return text


# --------------------------------------------------------------------- table

_COLOURS = {
    Status.ACCESSIBLE: "green",
    Status.BLOCKED: "red",
    Status.DOWN: "yellow",
    Status.OFFLINE: "magenta",
    Status.INCONCLUSIVE: "yellow",
}


def check_table(obs: DomainObservations, verdict: Verdict, *, colour: bool) -> str:
    """A readable multi-line report of one domain's check, safe for a terminal
    (network text escaped, see :mod:`probe.terminal`)."""
    lines = _dns_lines(obs.dns)
    for endpoint in obs.endpoints:
        lines += _endpoint_lines(endpoint)
    down_controls = [c.domain for c in obs.controls if not c.reachable]
    if obs.controls:
        state = "all reachable" if not down_controls else "unreachable: " + ", ".join(down_controls)
        lines.append(f"  control sites   {state}")
    if obs.helper is not None:
        lines.append(f"  control helper  {helper_summary(obs.helper)}")
    lines += [f"  why             {r}" for r in verdict.reasons]
    if verdict.status is Status.BLOCKED and verdict.https_ok:
        lines.append("  note            HTTPS still works; only plaintext HTTP is interfered with")
    lines += [f"  note            {n}" for n in (*obs.notes, *verdict.notes)]
    return "\n".join([_headline(obs, verdict, colour), *map(printable, lines)])


def _headline(obs: DomainObservations, verdict: Verdict, colour: bool) -> str:
    status = _status(verdict, colour)
    detail = ""
    if verdict.blocking:
        detail = "  " + ", ".join(m.value for m in verdict.blocking)
        if verdict.trigger:
            detail += f"  (censor keyed on: {verdict.trigger.value})"
    if verdict.blockpage:
        detail += f"  blockpage: {verdict.blockpage}"
    seconds = f"[{obs.duration_ms / 1000:.1f} s]"
    return f"{printable(obs.domain)}  {status}{printable(detail)}  {seconds}"


def _dns_lines(queries: Sequence[DNSQuery]) -> list[str]:
    lines = []
    for q in queries:
        if q.ok:
            result = ", ".join(q.addresses) or "(no address)"
            if q.replies and q.replies[0].cnames:
                result = "-> " + " -> ".join(q.replies[0].cnames) + "  " + result
        else:
            result = q.failure.value if q.failure else "?"
        extra = f"  [{len(q.replies)} replies]" if len(q.replies) > 1 else ""
        timing = f"({q.elapsed_ms:.0f} ms, {q.resolver})"
        lines.append(f"  dns {q.origin:<8} {q.qtype:<4} {result}  {timing}{extra}")
    return lines


def _endpoint_lines(e: EndpointObservation) -> list[str]:
    label = endpoint_label(e.address, e.port)
    origin = "+".join(e.origins)
    if e.skipped is not None:
        return [f"  {label:<22} not dialled: {e.skipped.value} ({origin} answer)"]
    parts = [_result("tcp", e.tcp)]
    if e.port == 443:
        parts += [_tls("tls", e.tls), _tls("tls control-sni", e.tls_control_sni)]
        parts.append(_http("https", e.http))
        if e.http_control_sni is not None:
            parts.append(_http("https control-sni", e.http_control_sni))
    else:
        parts.append(_http("http", e.http))
        parts.append(_http("http control-host", e.http_control_host))
    parts = [p for p in parts if p]
    return [f"  {label:<22} {parts[0]}"] + [f"  {'':<22} {p}" for p in parts[1:]]


def helper_summary(view: HelperObservation) -> str:
    """One line: what the helper outside saw (or why there is no answer)."""
    if not view.ok:
        return f"no answer ({'; '.join(view.tried) or view.failure})"
    dns = ", ".join(view.dns_addresses) or (view.dns_failure.value if view.dns_failure else "-")
    reached = sum(e.tcp_failure is None for e in view.endpoints)
    parts = [f"dns {dns}", f"tcp {reached}/{len(view.endpoints)} ok"]
    http = view.http
    if http is not None and http.status is not None:
        page = f"HTTP {http.status}"
        if http.redirects:
            page += f" via {http.redirects[-1].location}"
        if http.title:
            page += f' "{http.title[:60]}"'
        parts.append(page)
    elif http is not None:
        parts.append(f"http {http.failure.value if http.failure else 'failed'}")
    return f"{'; '.join(parts)}  ({view.elapsed_ms:.0f} ms, {view.helper})"


def _result(name: str, step: Any) -> str:
    if step is None:
        return ""
    outcome = "ok" if step.failure is None else step.failure.value
    return f"{name:<18}{outcome}  {step.elapsed_ms:.0f} ms"


def _tls(name: str, step: TLSObservation | None) -> str:
    text = _result(name, step)
    if step is not None and step.ok and step.version:
        text += f"  {step.version}"
    if step is not None and step.chain:
        text += f"  issuer: {step.chain[0].issuer}"
    return text


def _http(name: str, step: HTTPObservation | None) -> str:
    text = _result(name, step)
    if step is None or step.status is None:
        return text
    text += f"  HTTP {step.status}"
    if step.redirects:
        text += f" -> {step.redirects[-1].location}"
    if step.title:
        text += f'  "{step.title[:60]}"'
    rate = step.throughput_bps
    if rate is not None:
        text += f"  {rate / 1000:.0f} kbit/s"
    return text
