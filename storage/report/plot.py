"""Daily reachability per vantage as a PNG, with the reported events drawn on it.

One panel per vantage: for each UTC day a bar split into the accessible
share (green) and the blocked share coloured by the blocked checks' main
method, a line for reachability, and a vertical line per reported event
(colour by kind, labelled on the top panel).  matplotlib is imported here,
lazily, through its object API and the Agg canvas, so no GUI backend or
global pyplot state is involved.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from probe.errors import UsageError
from storage.report.summary import Report, Series
from storage.timeline import event_moment

MAX_PANELS = 12
ACCESSIBLE_COLOUR = "#8fd18f"
KIND_COLOURS = {
    "block": "#c62828",
    "partial": "#ef6c00",
    "shutdown": "#6a1b9a",
    "disruption": "#f9a825",
    "restore": "#2e7d32",
    "court": "#1565c0",
    "statement": "#546e7a",
    "other": "#9e9e9e",
}


def method_colours(report: Report) -> dict[str, str]:
    """A stable colour per main blocking method present in the report."""
    from matplotlib import colormaps

    names = sorted({m for s in report.vantages for d in s.days for m, _ in d.primary})
    cmap = colormaps["tab20"]
    return {
        name: _hex(cmap(i % 20)) if name != "unspecified" else "#616161"
        for i, name in enumerate(names)
    }


def _hex(rgba: tuple[float, float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


def render_png(report: Report, *, dpi: int = 100) -> bytes:
    """The plot as PNG bytes (an explanatory placeholder plot when there is no data)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # a dependency, but an install without it must still say so
        raise UsageError(
            "the PNG and HTML reports need matplotlib (a reachprobe dependency): "
            "pip install matplotlib"
        ) from None

    panels = report.vantages[:MAX_PANELS]
    height = 1.2 + 2.0 * max(1, len(panels))
    fig = Figure(figsize=(12, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no measurements", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    colours = method_colours(report)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, series) in enumerate(zip(axes, panels, strict=True)):
        _panel(ax, series, colours)
        _events(ax, report, label=i == 0)
    axes[-1].set_xlabel("day (UTC)")
    title = "Daily reachability per vantage"
    if report.domain:
        title += f", {report.domain}"
    if report.platform:
        title += f": {report.platform}"
    if report.country:
        title += f" in {report.country}"
    if len(report.vantages) > MAX_PANELS:
        title += f" (first {MAX_PANELS} of {len(report.vantages)} vantages)"
    fig.suptitle(title)
    _legend(fig, colours, report)
    return _png(fig)


def _panel(ax: Any, series: Series, colours: dict[str, str]) -> None:
    days = [d for d in series.days if d.conclusive]
    x = [_num(d.day) for d in days]
    bottom = [0.0] * len(days)
    access = [d.accessible / d.conclusive for d in days]
    ax.bar(x, access, width=0.9, bottom=bottom, color=ACCESSIBLE_COLOUR, linewidth=0)
    bottom = access[:]
    for method, colour in colours.items():
        heights = [dict(d.primary).get(method, 0) / d.conclusive for d in days]
        if any(heights):
            ax.bar(x, heights, width=0.9, bottom=bottom, color=colour, linewidth=0)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.plot(x, access, color="black", linewidth=0.8, marker=".", markersize=3)
    if len(series.endpoints) > 1:
        _endpoint_lines(ax, series)
    ax.set_ylim(0, 1.05)
    ax.set_yticks([0, 0.5, 1])
    ax.set_yticklabels(["0%", "50%", "100%"])
    ax.set_ylabel("reachable", fontsize=8)
    ax.set_title(series.label, fontsize=9, loc="left")
    for ep in series.episodes:
        start = _num(ep.onset)
        stop = _num(ep.end) if ep.end else (x[-1] + 0.5 if x else start)
        ax.axvspan(start, stop, ymin=0.97, ymax=1.0, color="black", alpha=0.6, linewidth=0)
    ax.xaxis_date()


def _endpoint_lines(ax: Any, series: Series) -> None:
    """One thin line per endpoint: its own daily reachability, so a block of
    one endpoint among several shows although the pooled bar hardly moves."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for i, endpoint in enumerate(series.endpoints[:10]):
        days = [d for d in endpoint.days if d.conclusive]
        ax.plot(
            [_num(d.day) for d in days],
            [d.accessible / d.conclusive for d in days],
            color=_hex(cmap(i)),
            linewidth=0.8,
            label=endpoint.key,
        )
    ax.legend(fontsize=6, loc="lower left", ncols=min(4, len(series.endpoints)))


def _events(ax: Any, report: Report, *, label: bool) -> None:
    for n, event in enumerate(report.events, start=1):
        x = _num(event_moment(event))
        colour = KIND_COLOURS.get(event.kind, "#9e9e9e")
        style = "-" if event.platform != "*" else ":"
        ax.axvline(x, color=colour, linestyle=style, linewidth=1.2, alpha=0.9)
        if label:
            ax.annotate(
                f"{n} {event.kind}",
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, 2),
                textcoords="offset points",
                rotation=60,
                fontsize=7,
                color=colour,
                annotation_clip=False,
            )


def _legend(fig: Any, colours: dict[str, str], report: Report) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=ACCESSIBLE_COLOUR, label="accessible")]
    handles += [Patch(color=c, label=f"blocked: {m}") for m, c in colours.items()]
    kinds = sorted({e.kind for e in report.events})
    handles += [Line2D([], [], color=KIND_COLOURS.get(k, "#9e9e9e"), label=k) for k in kinds]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize=8)


def _num(when: dt.date | dt.datetime) -> float:
    from matplotlib.dates import date2num

    if not isinstance(when, dt.datetime):
        when = dt.datetime.combine(when, dt.time(12, 0), tzinfo=dt.UTC)
    return float(date2num(when))  # type: ignore[no-untyped-call]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
