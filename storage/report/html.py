"""A self-contained HTML report: tables, the plot as a data: URI, events with sources.

Everything that came from the network or a user's file (vantage names,
titles, sources, URLs, methods) is HTML-escaped; links are only made for
http(s) URLs.  No external resource is referenced, so the file can be mailed
or archived as it is.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence

from storage.report import text, vantages
from storage.report.summary import Report

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right}
img{max-width:100%;border:1px solid #ddd}
.muted{color:#666;font-size:90%}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(url: str | None, label: str) -> str:
    if url and url.lower().startswith(("http://", "https://")):
        return f'<a href="{esc(url)}" rel="noopener noreferrer">{esc(label)}</a>'
    return esc(label)


def render_html(
    report: Report,
    png: bytes | None,
    *,
    generated: dt.datetime | None = None,
    comparison: vantages.Comparison | None = None,
) -> str:
    """The whole report as one HTML document (``png`` embedded when given), with
    the vantage comparison (status over time, ISP x endpoint, flips) when given."""
    generated = generated or dt.datetime.now(dt.UTC)
    title = f"Reachability report: {report.platform or 'all platforms'}"
    if report.country:
        title += f" in {report.country}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">Period {esc(text.period(report))}; {report.total_checks} check(s) from '
        f"{len(report.vantages)} vantage(s); generated {esc(text.fmt_time(generated))} UTC. "
        "Shares are of conclusive checks (blocked or accessible); days are UTC days.</p>",
    ]
    if report.empty:
        parts += ["<p>No measurements match.</p>", _events(report), "</body></html>"]
        return "\n".join(parts)
    if png:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<img alt="Daily reachability per vantage" src="data:image/png;base64,{data}">'
        )
    parts += ["<h2>Per vantage</h2>", _table(text.SERIES_HEADER, text.series_rows(report.vantages))]
    parts += ["<h2>Per network</h2>", _table(text.SERIES_HEADER, text.series_rows(report.networks))]
    parts += ["<h2>Per endpoint</h2>", _table(text.ENDPOINT_HEADER, text.endpoint_rows(report))]
    blocked_when = "".join(f"<li>{esc(line)}</li>" for line in text.platform_lines(report))
    parts += ["<h2>Which endpoints were blocked when</h2>", f"<ul>{blocked_when}</ul>"]
    r = report.rule
    parts += [
        "<h2>Blocking onset and end</h2>",
        f'<p class="muted">Detected from the measurements: an onset is a blocked check after '
        f"which at least {r.onset_share:.0%} of the checks in the next "
        f"{esc(text.fmt_lag(r.window).lstrip('+'))} (at least {r.min_checks}) are blocked; an "
        f"end is the same with at least {r.end_share:.0%} accessible; each edge is then placed "
        "at the best-fitting change point nearby. Lag = detected minus the nearest reported "
        "change (positive: the network changed later than reported).</p>",
    ]
    edges = text.edge_rows([*report.vantages, *report.networks, *text.endpoint_edges(report)])
    parts.append(_table(text.EDGE_HEADER, edges) if edges else "<p>No sustained blocking.</p>")
    a = report.agreement
    parts += [
        "<h2>Agreement with the reported status</h2>",
        f"<p>{esc(text.percent(a.rate))} of comparable checks agree ({a.agree} agree, "
        f"{a.disagree} disagree; {a.not_comparable} not comparable: inconclusive verdicts or "
        "nothing reported yet).</p>",
        _table(("", "reported blocked", "reported restored"), text.agreement_rows(a)),
    ]
    parts += ["<h2>Reported events</h2>", _events(report)]
    header, rows = text.daily_rows(report)
    parts += ["<h2>Per day: blocked share (checks)</h2>", _table(header, rows)]
    if comparison is not None and comparison.days:
        parts += _comparison(comparison)
    parts.append("</body></html>")
    return "\n".join(parts)


def _comparison(comparison: vantages.Comparison) -> list[str]:
    legend, *strips = vantages.strip_lines(comparison)
    view = "\n".join(strips)
    return [
        "<h2>Comparing vantages</h2>",
        f'<p class="muted">{esc(legend)}</p>',
        f"<pre>{esc(view)}</pre>",
        "<h3>ISP x endpoint (blocked: share of conclusive checks)</h3>",
        _table(vantages.ISP_HEADER, vantages.isp_rows(comparison)),
        "<h3>Intermittency: status flips per vantage and day (all endpoints)</h3>",
        _table(vantages.FLIP_HEADER, vantages.flip_rows(comparison)),
    ]


def _events(report: Report) -> str:
    if not report.events:
        return "<p>No reported events in this period.</p>"
    rows = []
    for n, e in enumerate(report.events, start=1):
        when = e.date.isoformat() + (f" {e.time.strftime('%H:%M')} UTC" if e.time else "")
        rows.append(
            "<tr>"
            f"<td>{n}</td><td>{esc(when)}</td><td>{esc(e.platform)}</td><td>{esc(e.kind)}</td>"
            f"<td>{esc(e.title)}</td><td>{_link(e.url, e.source)}</td><td>{esc(e.certainty)}</td>"
            "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("#", "date", "platform", "kind", "event", "source", "certainty")
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
