"""Trace a target when its check finds it blocked (``[trace] when_blocked``).

At most once per target per ``min_interval`` (a day by default; the last
stored trace of the domain decides, so a restart does not trace again), in
a worker thread, after the measurement is stored. A vantage without raw
sockets or scapy logs that once and stops trying; any other failure of a
trace is logged and never disturbs the checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

from probe.config import Config, TraceConfig
from probe.errors import ExitStatus, ProbeError
from storage import Store
from storage.records import Vantage

log = logging.getLogger(__name__)


def tracer_for(config: Config) -> Tracer | None:
    """The daemon's tracer, or None when ``[trace] when_blocked`` is off. Its DNS probes
    go to the first plain-DNS control resolver, else the vantage resolver."""
    if not config.trace.when_blocked:
        return None
    from probe.checks.dns import Resolver, parse_resolver, system_resolver

    checks = config.checks
    candidates = [*(checks.control_resolvers or ()), *filter(None, [checks.resolver])]
    plain: list[Resolver] = [
        r for r in map(parse_resolver, candidates) if r.scheme == "udp" and ":" not in r.host
    ]
    resolver = plain[0] if plain else system_resolver()
    return Tracer(
        config.trace,
        (resolver.host, resolver.port),
        checks.control_sni or "example.com",
        checks.ca_bundle,
    )


@dataclass
class Tracer:
    config: TraceConfig
    resolver: tuple[str, int]  # where the trace's DNS probes go
    control_name: str
    ca_bundle: str | None
    disabled: bool = False
    running: set[str] = field(default_factory=set)

    def due(self, store: Store, domain: str, now: dt.datetime) -> bool:
        from storage.traces import last_trace_at

        if self.disabled or domain in self.running:
            return False
        last = last_trace_at(store, domain)
        return last is None or (now - last).total_seconds() >= self.config.min_interval_s

    async def after_blocked(
        self, store: Store, vantage: Vantage, domain: str, measurement_id: str, now: dt.datetime
    ) -> str | None:
        """Trace ``domain`` if it is due; the stored trace's id, or None."""
        try:
            if not await asyncio.to_thread(self.due, store, domain, now):
                return None
        except ProbeError as exc:
            log.warning("%s: cannot tell when it was last traced (%s); not tracing", domain, exc)
            return None
        self.running.add(domain)
        try:
            return await asyncio.to_thread(self._trace, store, vantage, domain, measurement_id)
        except ProbeError as exc:
            if exc.exit_status == ExitStatus.PRIVILEGE:
                self.disabled = True
                log.error("trace when blocked is off from now on: %s", exc)
            else:
                log.error("%s: trace failed: %s", domain, exc)
        except Exception:  # a bug in a trace must not stop the checks
            log.exception("%s: internal error in trace", domain)
        finally:
            self.running.discard(domain)
        return None

    def _trace(self, store: Store, vantage: Vantage, domain: str, measurement_id: str) -> str:
        from probe.trace.locate import locate
        from probe.trace.run import TraceOptions, trace
        from storage.traces import TraceSummary, save_trace

        options = TraceOptions(
            resolver=self.resolver,
            control_name=self.control_name,
            ca_bundle=self.ca_bundle,
            max_ttl=self.config.max_ttl,
            wait=self.config.wait_s,
        )
        observation = trace(domain, options)
        loc = locate(observation)
        summary = TraceSummary(loc.interference, loc.censor_hop, loc.censor_address, loc.evidence)
        trace_id = save_trace(store, observation, summary, vantage, measurement_id)
        log.info("%s: traced (trace %s): %s", domain, trace_id, loc.evidence)
        return trace_id
