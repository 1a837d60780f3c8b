"""The platform summary: can people on this network use the platform?

Derived only from the per-domain verdicts, by the rule documented in
docs/methodology.md ("Platform summary"):

* **BLOCKED from this network** when any *core* endpoint (``core`` in the
  profile: the site and the apps' API) is blocked over HTTPS;
* **PARTLY BLOCKED** when every core endpoint is reachable over HTTPS but an
  endpoint is blocked (media hosts, old names, short links; or only its
  plaintext HTTP: browsers and apps use HTTPS, so people still get through);
* **REACHABLE from this network** when every core endpoint is reachable and
  nothing is blocked;
* **OFFLINE** when a core endpoint found this network offline;
* **UNCLEAR** otherwise (a core endpoint down, unclear or not checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probe.glossary import TERMS, method_words, trigger_words
from probe.targets import Platform
from probe.verdict import Status, Verdict


@dataclass(frozen=True)
class Result:
    """One domain's verdict, and where its site redirected (a host), if elsewhere."""

    domain: str
    verdict: Verdict
    redirect: str | None = None


def _plain_http_only(verdict: Verdict) -> bool:
    """Blocked, but HTTPS to the site works: only plaintext HTTP is interfered with."""
    return verdict.status is Status.BLOCKED and verdict.https_ok is True


def _usable(verdict: Verdict | None) -> bool:
    return verdict is not None and (
        verdict.status is Status.ACCESSIBLE or _plain_http_only(verdict)
    )


def platform_state(platform: Platform, results: Sequence[Result]) -> str:
    """The headline state of the rule above."""
    by_domain = {r.domain: r.verdict for r in results}
    core = [by_domain.get(d) for d in platform.required]
    if any(v is not None and v.status is Status.BLOCKED and not _usable(v) for v in core):
        return "BLOCKED from this network"
    if all(_usable(v) for v in core):
        if any(v.status is Status.BLOCKED for v in by_domain.values()):
            return "PARTLY BLOCKED"
        return "REACHABLE from this network"
    if any(v is not None and v.status is Status.OFFLINE for v in core):
        return "OFFLINE (this network reaches no control site)"
    return "UNCLEAR"


def platform_summary(platform: Platform, results: Sequence[Result]) -> str:
    """One line: ``X (Twitter): BLOCKED from this network — x.com, api.x.com: ...``."""
    order = {d: i for i, d in enumerate(platform.domains)}
    mine = sorted((r for r in results if r.domain in order), key=lambda r: order[r.domain])
    parts = _blocked_groups(mine)
    media = [r for r in mine if r.domain in platform.media]
    accessible = [r for r in mine if r.verdict.status is Status.ACCESSIBLE]
    media_ok = bool(media) and all(_usable(r.verdict) for r in media)
    if media_ok:
        parts.append("media hosts reachable")
    elif any(r.verdict.status is Status.BLOCKED for r in media):
        parts.append("images, video or scripts will not load")
    reachable = [r.domain for r in accessible if not r.redirect and not (media_ok and r in media)]
    if reachable:
        parts.append(", ".join(reachable) + " reachable")
    parts += [f"{r.domain} redirects to {r.redirect}" for r in accessible if r.redirect]
    for status in (Status.DOWN, Status.OFFLINE, Status.INCONCLUSIVE):
        names = [r.domain for r in mine if r.verdict.status is status]
        if names:
            parts.append(", ".join(names) + f": {TERMS[status.value].short}")
    missing = [d for d in platform.domains if d not in {r.domain for r in mine}]
    if missing:
        parts.append("not checked: " + ", ".join(missing))
    state = platform_state(platform, mine)
    return f"{platform.title}: {state}" + (" — " + "; ".join(parts) if parts else "")


def blocking_words(verdict: Verdict) -> str:
    """``SNI filtering (TLS reset)``: the trigger and methods in plain words."""
    words = [method_words(m) for m in verdict.blocking]
    if verdict.blockpage:  # which blockpage: it often names the ISP or the authority
        words = [f"{w} {verdict.blockpage}" if w == "blockpage" else w for w in words]
    methods = ", ".join(words)
    return f"{trigger_words(verdict.trigger)} ({methods})" if methods else "blocked"


def _blocked_groups(results: Sequence[Result]) -> list[str]:
    """Blocked domains grouped by how they are blocked, first seen first."""
    groups: dict[str, list[str]] = {}
    for r in results:
        if r.verdict.status is Status.BLOCKED:
            how = blocking_words(r.verdict)
            if _plain_http_only(r.verdict):
                how += " on plaintext HTTP only, HTTPS works"
            groups.setdefault(how, []).append(r.domain)
    return [f"{', '.join(domains)}: {how}" for how, domains in groups.items()]
