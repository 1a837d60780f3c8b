"""Turn one domain's observations into a verdict: the decision table in code.

The classifier is a pure function (no I/O, no clock), so stored observations
can be re-classified when it improves.  It works layer by layer, each layer a
small rule function that returns :class:`Finding` records (a method, the
trigger the differential points at, and a sentence of evidence):

* DNS: vantage answers against the control resolvers, injection, failures;
  this also decides which addresses are the site's (the legitimacy rule).
* endpoints: for every legitimate address:port, the first layer that failed
  (TCP -> TLS -> HTTP), with its differential (control SNI, control Host);
* content: blockpage fingerprints anywhere, cross-site redirects and
  plaintext-vs-HTTPS differences on the plaintext path;
* throughput: target SNI against control SNI on the same address;
* the control helper (when one answered): its DNS is one more control
  resolver, its TLS and ASNs prove addresses legitimate, and a failure it
  meets too (same endpoint, same layer) is the site's own (``down``), not
  the censor's; its page is the reference for plaintext when HTTPS is not.

:func:`_combine` then applies the verdict precedence.  docs/methodology.md
is the prose version of this module; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from probe import netaddr
from probe.blockpages import Fingerprint, match_dns, match_http, shipped_fingerprints
from probe.failures import Failure
from probe.observations import (
    DNSQuery,
    DNSRecord,
    DNSReply,
    DomainObservations,
    EndpointObservation,
    HelperHTTP,
    HelperObservation,
    HTTPObservation,
    TLSObservation,
    quick_init,
)
from probe.sites import same_site
from probe.verdict import Method, Status, Trigger, Verdict

Path = Literal["dns", "https", "http"]  # which way to the site a finding breaks

THROTTLE_RATIO = 0.1  # target-SNI rate at most a tenth of the control-SNI rate
DIFF_LENGTH_RATIO = 0.7  # OONI Web Connectivity's body-length threshold
SERVER_ERRORS = frozenset({*range(500, 505), *range(520, 530)})

_ORDER = {method: index for index, method in enumerate(Method)}
_TRIGGER_ORDER = {trigger: index for index, trigger in enumerate(Trigger)}

_DNS_METHODS = {
    Failure.DNS_NXDOMAIN: Method.DNS_NXDOMAIN,
    Failure.DNS_SERVFAIL: Method.DNS_SERVFAIL,
    Failure.DNS_REFUSED: Method.DNS_REFUSED,
    Failure.DNS_NO_ANSWER: Method.DNS_NO_ANSWER,
    Failure.TIMEOUT: Method.DNS_TIMEOUT,
}
_RCODE_FAILURES = frozenset(
    {
        Failure.DNS_NXDOMAIN,
        Failure.DNS_SERVFAIL,
        Failure.DNS_REFUSED,
        Failure.DNS_NO_ANSWER,
        Failure.DNS_OTHER_RCODE,
    }
)
_RCODES = {
    Failure.DNS_NXDOMAIN: "NXDOMAIN",
    Failure.DNS_SERVFAIL: "SERVFAIL",
    Failure.DNS_REFUSED: "REFUSED",
    Failure.DNS_NO_ANSWER: "NOERROR",
}
_UNREACHABLE = frozenset({Failure.NETWORK_UNREACHABLE, Failure.HOST_UNREACHABLE})
_TCP_METHODS = {
    Failure.TIMEOUT: Method.TCP_TIMEOUT,
    Failure.CONNECTION_REFUSED: Method.TCP_REFUSED,  # a RST answering the SYN
    Failure.CONNECTION_RESET: Method.TCP_RESET,
    Failure.EOF: Method.TCP_RESET,
    Failure.HOST_UNREACHABLE: Method.TCP_REFUSED,  # ICMP rejection, when routes exist
    Failure.NETWORK_UNREACHABLE: Method.TCP_REFUSED,
}
_TLS_METHODS = {
    Failure.CONNECTION_RESET: Method.TLS_RESET,
    Failure.TIMEOUT: Method.TLS_TIMEOUT,
    Failure.EOF: Method.TLS_EOF,
}
_HTTP_METHODS = {
    Failure.CONNECTION_RESET: Method.HTTP_RESET,
    Failure.TIMEOUT: Method.HTTP_TIMEOUT,
    Failure.EOF: Method.HTTP_EOF,
}


@dataclass(frozen=True)
class Finding:
    """One piece of evidence of interference."""

    method: Method
    trigger: Trigger | None
    path: Path
    reason: str
    fingerprint: Fingerprint | None = None


@quick_init
@dataclass(frozen=True)
class _DNSResult:
    findings: tuple[Finding, ...]
    legit: frozenset[str]  # the site's addresses (control-matched, TLS-proven, or unverifiable)
    bad: frozenset[str]  # addresses only from answers judged illegitimate
    vantage_legit: frozenset[str]  # legitimate addresses the vantage resolver gave
    down: bool  # the control resolver fails the same way: the domain is broken
    notes: tuple[str, ...]  # side details: never decide the verdict
    doubts: tuple[str, ...] = ()  # failures no control explains: reasons only for down/inconclusive
    unresolved: bool = False  # the vantage resolver (working for others) gave no address


@quick_init
@dataclass(frozen=True)
class _Outcome:
    """How far one endpoint got: ``ok`` (a usable response), ``fail`` (a
    finding), ``server_error`` (5xx), ``odd`` (a failure no method names),
    ``down`` (a failure the control helper met too: the site's own)."""

    kind: Literal["ok", "fail", "server_error", "odd", "down"]
    endpoint: EndpointObservation
    note: str
    finding: Finding | None = None
    response: HTTPObservation | None = None


def classify(obs: DomainObservations, fingerprints: Sequence[Fingerprint] | None = None) -> Verdict:
    """The verdict for one domain (pure: the same input always gives the same verdict)."""
    fps = shipped_fingerprints() if fingerprints is None else tuple(fingerprints)
    helper = obs.helper if obs.helper is not None and obs.helper.ok else None
    dns = _dns_layer(obs, fps, helper)
    endpoints = [e for e in obs.endpoints if e.tcp is not None]
    ignored = _unroutable_families(endpoints)
    legit = [e for e in endpoints if e.address not in dns.bad and _family(e) not in ignored]
    https = [_https_outcome(e, fps, helper) for e in legit if e.port == 443]
    https_ok_at = {o.endpoint.address for o in https if o.kind == "ok"}
    reference = _Reference(_reference(https, dns.vantage_legit), helper)
    plain = [_plain_outcome(e, fps, reference, https_ok_at) for e in legit if e.port == 80]
    content = [f for e in endpoints if e.address in dns.bad for f in _bad_endpoint(e, fps)]
    throttles = [f for e in legit if (f := _throttle(e)) is not None]
    notes = list(dns.notes)
    notes += [f"IPv{v} has no route from this vantage; its addresses are ignored." for v in ignored]
    notes += _helper_notes(obs.helper)
    return _combine(obs, dns, https, plain, content + throttles, notes)


# ------------------------------------------------------------- control helper


def _helper_queries(helper: HelperObservation | None, domain: str) -> list[DNSQuery]:
    """The helper's lookup as control queries (one per family it answered, or its failure)."""
    if helper is None or (helper.dns_failure is None and not helper.dns_addresses):
        return []
    out = []
    for qtype, family in (("A", 4), ("AAAA", 6)):
        addresses = [a for a in helper.dns_addresses if netaddr.family(a) == family]
        failure = helper.dns_failure
        if failure is None and not addresses:
            continue
        rcode = _RCODES.get(failure, "NOERROR") if failure else "NOERROR"
        records = tuple(DNSRecord(qtype, domain, a, 0) for a in addresses)
        replies = (
            ()
            if failure and failure not in _RCODES
            else (DNSReply(rcode, records, 0.0, helper.helper),)
        )
        out.append(DNSQuery(helper.helper, "control", domain, qtype, 0.0, 0.0, failure, replies))
    return out


def _helper_proven(helper: HelperObservation | None, domain: str) -> set[str]:
    """Addresses the helper proved to be the site's: TLS with a valid certificate for
    the domain, or the same ASN as an address the helper itself resolved."""
    if helper is None:
        return set()
    proven = {e.address for e in helper.endpoints if e.tls_ok and e.tls_server_name == domain}
    asn = {a.address: a.asn for a in helper.asns if a.asn}
    own = {asn[a] for a in helper.dns_addresses if a in asn}
    return proven | {a for a, n in asn.items() if n in own}


def _helper_notes(helper: HelperObservation | None) -> list[str]:
    if helper is None or helper.ok:
        return []
    tried = "; ".join(helper.tried) or f"{helper.helper}: {helper.failure}"
    return [f"No control helper answered ({tried}); judged from this vantage's own differentials."]


def _helper_agrees(
    e: EndpointObservation,
    helper: HelperObservation | None,
    layer: Literal["tcp", "tls"],
    certificate: bool = False,
) -> str | None:
    """How the helper failed the same way at this endpoint (or at every one it
    tried, when it was not given this one); None when it did not.  At the TLS
    layer a certificate failure matches only a certificate failure, and a
    reset or timeout only a failure that is not one."""
    if helper is None:
        return None
    mine = helper.endpoint(e.address, e.port)
    tried = [
        h
        for h in helper.endpoints
        if h.port == e.port and (layer == "tcp" or h.tls_server_name is not None)
    ]
    if mine not in tried:
        mine = None  # not given this endpoint (or no TLS there): judge by every one it tried
    candidates = [mine] if mine is not None else tried
    failures = [h.tcp_failure or (h.tls_failure if layer == "tls" else None) for h in candidates]
    if not failures or not all(
        f is not None and (layer == "tcp" or f.is_tls_certificate == certificate) for f in failures
    ):
        return None
    where = "to it" if mine is not None else "to any address of the site"
    return f"{failures[0]} {where}"


# ------------------------------------------------------------------------ DNS


def _dns_layer(
    obs: DomainObservations, fps: Sequence[Fingerprint], helper: HelperObservation | None
) -> _DNSResult:
    """Findings of the DNS layer and the legitimacy of every address."""
    vantage = [q for q in obs.dns if q.origin == "vantage"]
    control = [q for q in obs.dns if q.origin == "control" and not _injected(q)]
    control += _helper_queries(helper, obs.domain)
    by_type: dict[str, set[str]] = {}
    nonexistent: set[str] = set()  # record types a control says do not exist (NXDOMAIN)
    for q in control:
        by_type.setdefault(q.qtype, set()).update(q.addresses)
        if q.failure is Failure.DNS_NXDOMAIN and q.replies:
            nonexistent.add(q.qtype)
    tls_valid = {e.address for e in obs.endpoints if e.tls is not None and e.tls.ok}
    tls_valid |= _helper_proven(helper, obs.domain)
    findings: list[Finding] = []
    notes: list[str] = []
    legit: set[str] = {a for addrs in by_type.values() for a in addrs}
    bad: set[str] = set()
    vantage_legit: set[str] = set()

    for q in vantage:
        injected = _injected(q)
        if injected:
            findings.append(_injection_finding(q))
        for reply in q.replies if injected else q.replies[:1]:
            addresses = reply.addresses
            if not addresses:
                continue
            nx = q.qtype in nonexistent and not by_type.get(q.qtype)
            verdict = _judge_answer(addresses, by_type.get(q.qtype, set()), tls_valid, fps, nx)
            if verdict is None:
                legit.update(addresses)
                vantage_legit.update(addresses)
                if not by_type.get(q.qtype) and not tls_valid.intersection(addresses):
                    notes.append(
                        f"No control resolver answered {q.qtype} for {q.qname}; the vantage "
                        f"answer {_join(addresses)} could not be verified and is trusted."
                    )
                continue
            bad.update(addresses)
            if not injected:
                control_view = by_type.get(q.qtype, set())
                findings.append(_answer_finding(q, reply, verdict, control_view, nx))

    failed = [q for q in vantage if not q.ok]
    resolved_any = any(q.addresses for q in vantage)
    # A failure for one record type while another type resolved legitimately is
    # loss, an AAAA-filtering resolver or a resolver bug: censors fail every type.
    resolved_legit = bool(vantage_legit)
    resolver_broken = _vantage_resolver_broken(obs)
    control_resolved = any(q.addresses for q in control)
    doubts: list[str] = []
    for q in failed:
        twins = [c for c in control if c.qtype == q.qtype]
        assert q.failure is not None
        if any(c.addresses for c in twins):
            if resolver_broken:
                notes.append(
                    f"The vantage resolver {q.resolver} also fails for the control sites; "
                    f"its {q.failure} for {q.qname} is not evidence of blocking."
                )
            elif q.failure in _DNS_METHODS and not resolved_legit:
                findings.append(_failure_finding(q, twins))
            elif q.failure in _DNS_METHODS:
                notes.append(
                    f"{q.resolver} gave {q.failure} for {q.qtype} {q.qname} although the "
                    "control resolver answered; other record types resolved, so it is not "
                    "counted as blocking."
                )
            else:
                # not a method: only a reason when the vantage resolved nothing at all
                odd = f"{q.resolver} failed for {q.qtype} {q.qname}: {q.failure}."
                (notes if resolved_any else doubts).append(odd)
        elif (
            q.failure is Failure.DNS_NO_ANSWER
            and resolved_any
            and all(c.failure is Failure.DNS_NO_ANSWER for c in twins)
        ):
            continue  # no record of this type anywhere (e.g. no IPv6): nothing to say
        elif control_resolved:
            # The control resolved the name with another type: the domain's DNS
            # works, this type just has no record there either (e.g. no AAAA).
            notes.append(
                f"{q.resolver} gave {q.failure} for {q.qtype} {q.qname}; the control "
                f"resolver has no {q.qtype} record either ({_first_failure(twins)}), so this "
                "record type does not count."
            )
        elif any(c.replies and c.failure in _RCODE_FAILURES for c in twins):
            doubts.append(
                f"{q.resolver} gave {q.failure} for {q.qtype} {q.qname} and the control "
                f"resolver also failed ({_first_failure(twins)}): the domain's DNS is broken."
            )
        else:
            doubts.append(
                f"{q.resolver} gave {q.failure} for {q.qtype} {q.qname} and no control "
                "resolver answered, so DNS blocking cannot be told from a DNS outage."
            )
    return _DNSResult(
        findings=tuple(findings),
        legit=frozenset(legit),
        bad=frozenset(bad - legit),
        vantage_legit=frozenset(vantage_legit),
        down=not resolved_any and _control_says_broken(control),
        unresolved=bool(vantage) and not resolved_any and not resolver_broken,
        notes=tuple(notes),
        doubts=tuple(doubts),
    )


def _control_says_broken(control: Sequence[DNSQuery]) -> bool:
    """The domain's own DNS is broken: the control resolver gave no address for
    any type and answered the type that matters (A; any type when A was not
    asked) with an error code.  A timeout or a missing AAAA never decides it,
    so the same observations always give the same verdict."""
    if not control or any(q.addresses for q in control):
        return False
    asked_a = [q for q in control if q.qtype == "A"]
    return any(q.replies and q.failure in _RCODE_FAILURES for q in asked_a or control)


def _judge_answer(
    addresses: Sequence[str],
    control: set[str],
    tls_valid: set[str],
    fps: Sequence[Fingerprint],
    nonexistent: bool = False,
) -> Method | Fingerprint | None:
    """None when the answer is legitimate, else why not (a DNS fingerprint or a method).

    Legitimate: any of its addresses is a control address (or in the same /24
    or /48, for CDNs), or completed TLS with a valid certificate for the domain.
    Without a control answer only bogons are rejected (a public site never
    publishes one); anything else cannot be judged and is trusted, unless a
    control (the helper) says the name does not exist (``nonexistent``).
    """
    fingerprint = match_dns(addresses, fps)
    if fingerprint is not None:
        return fingerprint
    if any(a in tls_valid or _near(a, control) for a in addresses):
        return None
    if any(netaddr.is_bogon(a) for a in addresses):
        return Method.DNS_BOGON
    return Method.DNS_MISMATCH if control or nonexistent else None


def _near(address: str, control: Iterable[str]) -> bool:
    ip = netaddr.parse(address)
    if ip is None:
        return False
    prefix = 24 if ip.version == 4 else 48
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return any((c := netaddr.parse(other)) is not None and c in network for other in control)


def _injected(q: DNSQuery) -> bool:
    return len({frozenset(r.addresses) for r in q.replies}) > 1


def _injection_finding(q: DNSQuery) -> Finding:
    answers = "; then ".join(f"{r.rcode} {_join(r.addresses) or '(none)'}" for r in q.replies)
    return Finding(
        Method.DNS_INJECTION,
        Trigger.DNS,
        "dns",
        f"{q.resolver} sent {len(q.replies)} different replies to one {q.qtype} query for "
        f"{q.qname}: {answers}.",
    )


def _answer_finding(
    q: DNSQuery,
    reply: DNSReply,
    why: Method | Fingerprint,
    control: set[str],
    nonexistent: bool = False,
) -> Finding:
    expected = f"the control resolver gave {_join(sorted(control))}" if control else "no control"
    if nonexistent:
        expected = "a control says the name does not exist (NXDOMAIN)"
    if isinstance(why, Fingerprint):
        return Finding(
            Method.DNS_MISMATCH,
            Trigger.DNS,
            "dns",
            f"{q.resolver} answered {q.qname} with {_join(reply.addresses)}, a known filtering "
            f"address ({why.description}).",
            why,
        )
    kind = "a bogon (non-routable) address" if why is Method.DNS_BOGON else "addresses"
    return Finding(
        why,
        Trigger.DNS,
        "dns",
        f"{q.resolver} answered {q.qname} with {kind} {_join(reply.addresses)}; {expected}, "
        "and none completed TLS with a valid certificate.",
    )


def _failure_finding(q: DNSQuery, twins: Sequence[DNSQuery]) -> Finding:
    assert q.failure is not None
    good = next(c for c in twins if c.addresses)
    return Finding(
        _DNS_METHODS[q.failure],
        Trigger.DNS,
        "dns",
        f"{q.resolver} gave {q.failure} for {q.qtype} {q.qname} after {q.elapsed_ms:.0f} ms "
        f"while {good.resolver} answered {_join(good.addresses)}.",
    )


def _vantage_resolver_broken(obs: DomainObservations) -> bool:
    """True when the vantage resolver failed for every control site too."""
    queries = [q for c in obs.controls for q in c.dns if q.origin == "vantage"]
    return bool(queries) and not any(q.ok for q in queries)


def _first_failure(queries: Sequence[DNSQuery]) -> str:
    return next((str(q.failure) for q in queries if q.failure), "no answer")


# ------------------------------------------------------------------ TCP / IP


def _family(e: EndpointObservation) -> int:
    return netaddr.family(e.address) if netaddr.is_ip(e.address) else 4


def _unroutable_families(endpoints: Sequence[EndpointObservation]) -> tuple[int, ...]:
    """Families whose every dial failed with "unreachable" while another family
    was routable: no IPv6 route at home is not censorship."""
    routable: set[int] = set()
    unreachable: set[int] = set()
    for e in endpoints:
        assert e.tcp is not None
        (unreachable if e.tcp.failure in _UNREACHABLE else routable).add(_family(e))
    dead = unreachable - routable
    return tuple(sorted(dead)) if routable else ()


def _tcp_outcome(e: EndpointObservation, helper: HelperObservation | None) -> _Outcome | None:
    """None when the connection was made."""
    assert e.tcp is not None
    failure = e.tcp.failure
    if failure is None:
        return None
    label = netaddr.endpoint_label(e.address, e.port)
    path: Path = "https" if e.port == 443 else "http"
    detail = " (ICMP unreachable)" if failure in _UNREACHABLE else ""
    note = f"TCP connect to {label} failed after {e.tcp.elapsed_ms:.0f} ms: {failure}{detail}"
    same = _helper_agrees(e, helper, "tcp")
    if same is not None:
        return _Outcome("down", e, f"{note}; the control helper could not connect either ({same}).")
    if failure not in _TCP_METHODS:
        return _Outcome("odd", e, f"TCP connect to {label} failed: {failure}.")
    if helper is not None and helper.endpoint(e.address, e.port) is not None:
        note += ", while the control helper connected to it"
    note += "."
    return _Outcome("fail", e, note, Finding(_TCP_METHODS[failure], Trigger.IP, path, note))


# ------------------------------------------------------------------ TLS / SNI


def _tls_outcome(e: EndpointObservation, helper: HelperObservation | None) -> _Outcome | None:
    """None when the target-SNI handshake succeeded."""
    tls = e.tls
    if tls is None:
        return _Outcome("odd", e, f"No TLS handshake was attempted with {_label(e)}.")
    failure = tls.failure
    if failure is None:
        return None
    same = _helper_agrees(e, helper, "tls", failure.is_tls_certificate)
    if same is not None:
        own = "certificate" if failure.is_tls_certificate else "TLS"
        return _Outcome(
            "down",
            e,
            f"TLS to {_label(e)} with SNI {tls.server_name} failed ({failure}) and the control "
            f"helper's handshake failed too ({same}): the site's own {own} is broken, "
            "not interfered with.",
        )
    control = e.tls_control_sni
    if failure.is_tls_certificate:
        trigger = Trigger.SNI if _selective_mitm(tls, control) else Trigger.IP
        issuer = tls.chain[0].issuer if tls.chain else "unknown issuer"
        note = (
            f"TLS to {_label(e)} with SNI {tls.server_name} presented an untrusted certificate "
            f"({failure}, issued by {issuer})"
            + (
                f"; with SNI {control.server_name} the server presents a different issuer"
                if trigger is Trigger.SNI and control is not None
                else ""
            )
            + "."
        )
        return _Outcome("fail", e, note, Finding(Method.TLS_INVALID_CERT, trigger, "https", note))
    if failure not in _TLS_METHODS:
        return _Outcome("odd", e, f"TLS to {_label(e)} failed: {failure}.")
    sni_trigger, contrast = _control_sni_trigger(control)
    note = (
        f"TLS handshake to {_label(e)} with SNI {tls.server_name} failed after "
        f"{tls.elapsed_ms:.0f} ms: {failure}{contrast}."
    )
    return _Outcome("fail", e, note, Finding(_TLS_METHODS[failure], sni_trigger, "https", note))


def _control_sni_trigger(control: TLSObservation | None) -> tuple[Trigger | None, str]:
    """SNI when the control-SNI handshake to the same address got through, IP when not."""
    if control is None:
        return None, " (no control-SNI handshake to compare)"
    if control.failure is None or control.failure.is_tls_certificate:
        # The handshake completed; a control-SNI certificate is not for our domain anyway.
        return Trigger.SNI, f", while SNI {control.server_name} to the same address completed"
    return Trigger.IP, f"; SNI {control.server_name} to the same address failed too"


def _selective_mitm(tls: TLSObservation, control: TLSObservation | None) -> bool:
    """True when the untrusted chain is only shown for the target SNI."""
    if control is None or not tls.chain or not control.chain:
        return False
    return tls.chain[0].issuer != control.chain[0].issuer


# ------------------------------------------------------------------ HTTP / Host


def _https_outcome(
    e: EndpointObservation, fps: Sequence[Fingerprint], helper: HelperObservation | None
) -> _Outcome:
    early = _tcp_outcome(e, helper) or _tls_outcome(e, helper)
    if early is not None:
        return early
    response = e.http
    if response is None:
        return _Outcome("odd", e, f"No HTTPS request was sent to {_label(e)}.")
    fingerprint = match_http(response, fps)
    if fingerprint is not None:
        trigger = _https_content_trigger(e.http_control_sni, fps)
        return _blockpage(e, response, fingerprint, trigger, "https")
    failure = _http_failure(response)
    if failure is not None:
        trigger, contrast = _control_response_trigger(e.http_control_sni, "SNI")
        return _http_failed(e, response, failure, trigger, contrast, "https")
    return _response_outcome(e, response)


@dataclass(frozen=True)
class _Reference:
    """What a plaintext response is compared with: the HTTPS response of the
    same site (a censor cannot alter it), else the control helper's page."""

    https: HTTPObservation | None
    helper: HelperObservation | None

    @property
    def page(self) -> tuple[HTTPObservation | HelperHTTP, str] | None:
        if self.https is not None:
            return self.https, "over HTTPS"
        if self.helper is not None and self.helper.http is not None:
            return self.helper.http, "from the control helper"
        return None

    def same_redirect(self, location: str) -> str | None:
        """Who else was sent to ``location``'s site (so it is the site's own), or None."""
        host = urllib.parse.urlsplit(location).hostname or ""
        if self.https is not None and any(
            same_site(host, urllib.parse.urlsplit(other).hostname or "")
            for other in _locations(self.https)
        ):
            return "the HTTPS response redirects there too"
        hops = self.helper.http.redirects if self.helper and self.helper.http else ()
        if any(same_site(host, urllib.parse.urlsplit(r.location).hostname or "") for r in hops):
            return "the control helper was redirected there too"
        return None


def _plain_outcome(
    e: EndpointObservation,
    fps: Sequence[Fingerprint],
    reference: _Reference,
    https_ok_at: set[str],
) -> _Outcome:
    early = _tcp_outcome(e, reference.helper)
    if early is not None:
        return early
    response = e.http
    if response is None:
        return _Outcome("odd", e, f"No plaintext HTTP request was sent to {_label(e)}.")
    fingerprint = match_http(response, fps)
    content_trigger = _plain_content_trigger(e, fps, https_ok_at)
    if fingerprint is not None:
        return _blockpage(e, response, fingerprint, content_trigger, "http")
    failure = _http_failure(response)
    if failure is not None:
        trigger, contrast = _control_response_trigger(e.http_control_host, "Host")
        return _http_failed(e, response, failure, trigger, contrast, "http")
    elsewhere = _cross_site_location(response)
    if elsewhere is not None:
        note = f"Plaintext HTTP to {_label(e)} redirected to {elsewhere}, another site"
        own = reference.same_redirect(elsewhere)
        if own is not None:
            note = f"{note}; {own}, so it is the site's own redirect."
            return _Outcome("ok", e, note, None, response)
        finding = Finding(Method.HTTP_REDIRECT, content_trigger, "http", note + ".")
        return _Outcome("fail", e, note + ".", finding, response)
    page = reference.page
    difference = _difference(response, page[0], page[1]) if page is not None else None
    if difference is not None:
        assert page is not None
        where = "the HTTPS page" if page[1] == "over HTTPS" else "the control helper's page"
        note = f"Plaintext HTTP to {_label(e)} differs from {where}: {difference}."
        return _Outcome("fail", e, note, Finding(Method.HTTP_DIFF, content_trigger, "http", note))
    return _response_outcome(e, response)


def _http_failure(response: HTTPObservation) -> Failure | None:
    """The failure that broke the exchange, or None when a response arrived.

    A timeout after the status line is a slow body (judged by the throughput
    rule), not a failure; a reset or EOF in the body is interference.
    """
    failure = response.failure
    if failure is None or (response.status is not None and failure is Failure.TIMEOUT):
        return None
    return failure


def _http_failed(
    e: EndpointObservation,
    response: HTTPObservation,
    failure: Failure,
    trigger: Trigger | None,
    contrast: str,
    path: Path,
) -> _Outcome:
    scheme = "HTTPS" if path == "https" else "Plaintext HTTP"
    when = " in the body" if response.status is not None else ""
    note = (
        f"{scheme} request to {_label(e)} (Host {response.host}) failed{when} after "
        f"{response.elapsed_ms:.0f} ms: {failure}{contrast}."
    )
    if failure not in _HTTP_METHODS:
        return _Outcome("odd", e, note)
    return _Outcome("fail", e, note, Finding(_HTTP_METHODS[failure], trigger, path, note))


def _blockpage(
    e: EndpointObservation,
    response: HTTPObservation,
    fingerprint: Fingerprint,
    trigger: Trigger | None,
    path: Path,
) -> _Outcome:
    scheme = "HTTPS" if path == "https" else "Plaintext HTTP"
    note = (
        f"{scheme} to {_label(e)} returned a blockpage: {fingerprint.description} "
        f"(fingerprint {fingerprint.id})."
    )
    finding = Finding(Method.HTTP_BLOCKPAGE, trigger, path, note, fingerprint)
    return _Outcome("fail", e, note, finding, response)


def _response_outcome(e: EndpointObservation, response: HTTPObservation) -> _Outcome:
    scheme = "HTTPS" if e.port == 443 else "Plaintext HTTP"
    if response.status in SERVER_ERRORS:
        return _Outcome(
            "server_error",
            e,
            f"{scheme} to {_label(e)} answered {response.status}.",
            None,
            response,
        )
    return _Outcome("ok", e, f"{scheme} to {_label(e)} answered {response.status}.", None, response)


def _control_response_trigger(
    control: HTTPObservation | None, what: Literal["SNI", "Host"]
) -> tuple[Trigger | None, str]:
    if control is None:
        return None, f" (no control-{what} request to compare)"
    name = control.server_name if what == "SNI" else control.host
    if control.failure is None or control.status is not None:
        trigger = Trigger.SNI if what == "SNI" else Trigger.HOST
        return trigger, f", while {what} {name} to the same address got a response"
    return Trigger.IP, f"; {what} {name} to the same address failed too ({control.failure})"


def _https_content_trigger(
    control: HTTPObservation | None, fps: Sequence[Fingerprint]
) -> Trigger | None:
    if control is None or control.status is None:
        return None
    return Trigger.IP if match_http(control, fps) else Trigger.SNI


def _plain_content_trigger(
    e: EndpointObservation, fps: Sequence[Fingerprint], https_ok_at: set[str]
) -> Trigger | None:
    """What keyed a plaintext anomaly: the control-Host request on the same
    address decides when it was made; otherwise a working HTTPS on the same
    address rules the address out, which leaves the HTTP request (Host)."""
    control = e.http_control_host
    if control is not None and control.status is not None:
        return Trigger.IP if match_http(control, fps) else Trigger.HOST
    if control is not None:
        return Trigger.IP
    return Trigger.HOST if e.address in https_ok_at else None


def _bad_endpoint(e: EndpointObservation, fps: Sequence[Fingerprint]) -> list[Finding]:
    """What a server reached only through a bad DNS answer shows (a censor's server)."""
    found: list[Finding] = []
    for response in (e.http, e.http_control_host):
        fingerprint = match_http(response, fps) if response is not None else None
        if response is not None and fingerprint is not None:
            outcome = _blockpage(e, response, fingerprint, Trigger.DNS, "dns")
            assert outcome.finding is not None
            found.append(outcome.finding)
            break
    if e.tls is not None and e.tls.failure is not None and e.tls.failure.is_tls_certificate:
        note = (
            f"TLS to {_label(e)}, an address only the vantage resolver gave, presented an "
            f"untrusted certificate ({e.tls.failure})."
        )
        found.append(Finding(Method.TLS_INVALID_CERT, Trigger.DNS, "dns", note))
    return found


# --------------------------------------------------------- redirects and diffs


def _locations(response: HTTPObservation) -> list[str]:
    """Every redirect target of an exchange: the hops followed and the last Location."""
    locations = [r.location for r in response.redirects]
    if response.status is not None and 300 <= response.status < 400:
        locations += [v for k, v in response.headers if k.lower() == "location"]
    return locations


def _cross_site_location(response: HTTPObservation) -> str | None:
    """The first redirect target on another site, if any (relative ones stay on the host)."""
    for location in _locations(response):
        host = urllib.parse.urlsplit(location).hostname
        if host and not same_site(host, response.host):
            return location
    return None


def _difference(
    response: HTTPObservation, reference: HTTPObservation | HelperHTTP, where: str
) -> str | None:
    """How a plaintext response materially differs from the reference page
    (None: it does not, or the reference is no page to compare with)."""
    if reference.failure is not None and not isinstance(reference, HTTPObservation):
        return None
    if reference.status is None or reference.status >= 500 or reference.body_length is None:
        return None
    status = response.status or 0
    if 300 <= status < 400:
        return None  # a same-site redirect (cross-site ones are caught before)
    if status // 100 != reference.status // 100:
        return f"status {status} against {reference.status} {where}"
    longest = max(response.body_length, reference.body_length)
    ratio = min(response.body_length, reference.body_length) / longest if longest else 1.0
    title, expected = _title(response), _title(reference)
    if ratio < DIFF_LENGTH_RATIO and title != expected:
        return (
            f"{response.body_length} bytes titled {title!r} against {reference.body_length} "
            f"bytes titled {expected!r} {where}"
        )
    return None


def _title(response: HTTPObservation | HelperHTTP) -> str:
    return " ".join((response.title or "").split()).casefold()


def _reference(outcomes: Sequence[_Outcome], preferred: frozenset[str]) -> HTTPObservation | None:
    """The trusted HTTPS response that plaintext responses are compared with."""
    good = [o.response for o in outcomes if o.kind == "ok" and o.response is not None]
    mine = [o.response for o in outcomes if o.kind == "ok" and o.endpoint.address in preferred]
    return (mine or good or [None])[0]


# ----------------------------------------------------------------- throughput


def _throttle(e: EndpointObservation) -> Finding | None:
    """Target-SNI download at least 10x slower than control SNI on the same address."""
    if e.port != 443 or e.http is None or e.http_control_sni is None:
        return None
    target, control = e.http.throughput_bps, e.http_control_sni.throughput_bps
    if target is None or control is None or target > control * THROTTLE_RATIO:
        return None
    note = (
        f"HTTPS from {_label(e)} ran at {target / 1000:.0f} kbit/s with SNI "
        f"{e.http.server_name} against {control / 1000:.0f} kbit/s with SNI "
        f"{e.http_control_sni.server_name} on the same address."
    )
    return Finding(Method.THROTTLE, Trigger.SNI, "https", note)


# ------------------------------------------------------------------- combiner


def _combine(
    obs: DomainObservations,
    dns: _DNSResult,
    https: Sequence[_Outcome],
    plain: Sequence[_Outcome],
    extra: Sequence[Finding],
    notes: Sequence[str],
) -> Verdict:
    """Verdict precedence: offline > blocked > down > accessible > inconclusive.

    Reasons are the evidence for the verdict; notes are side details that did
    not decide it (partial failures, a record type nobody has, an unverified
    answer) and are never worded as evidence.
    """
    findings = list(dns.findings) + _path_findings(https) + _path_findings(plain) + list(extra)
    # A blockpage is evidence wherever it is seen, even next to a working address.
    findings += [
        o.finding
        for o in (*https, *plain)
        if o.finding is not None and _is_blockpage(o) and o.finding not in findings
    ]
    https_works = any(o.kind == "ok" for o in _users_view(https))
    evidence = [f.reason for f in findings]
    side = (*_partial(https), *_partial(plain), *notes)
    controls_down = bool(obs.controls) and not any(c.reachable for c in obs.controls)
    details = [o.note for o in (*https, *plain)]

    if controls_down and not https_works and not any(f.fingerprint for f in findings):
        names = ", ".join(dict.fromkeys(c.domain for c in obs.controls))
        lead = f"No control site ({names}) is reachable either: this vantage is offline."
        return Verdict(
            Status.OFFLINE,
            reasons=(lead, *evidence),
            https_ok=False if https else None,
            notes=(*side, *dns.doubts),
        )
    if findings:
        return _blocked(findings, evidence, https, dns, (*side, *dns.doubts))
    https_ok = https_works if https else None
    if dns.down:
        lead = "The control resolver cannot resolve the domain either: its DNS is broken."
        reasons = dns.doubts or (lead,)
        return Verdict(Status.DOWN, reasons=reasons, https_ok=https_ok, notes=side)
    if https_works and dns.unresolved:
        lead = (
            "The site works at the control resolver's addresses, but this network's resolver "
            "gave no address for it, in a way no known blocking method names."
        )
        return Verdict(Status.INCONCLUSIVE, reasons=(lead, *dns.doubts), https_ok=False, notes=side)
    if https_works:
        best = next(o for o in https if o.kind == "ok")
        lead = f"{best.note[:-1]} with a valid certificate."
        return Verdict(
            Status.ACCESSIBLE, reasons=(lead,), https_ok=True, notes=(*side, *dns.doubts)
        )
    own = _own_failure(https, plain, (*side, *dns.doubts))
    if own is not None:
        return own
    errors_only = all(o.kind == "server_error" for o in (*https, *plain))
    if https and errors_only:
        lead = "The site answers only with server errors (5xx) over HTTPS and HTTP."
        return Verdict(
            Status.DOWN, reasons=(lead, *details), https_ok=False, notes=(*notes, *dns.doubts)
        )
    nothing = not any(q.replies for q in obs.dns) and not any(
        e.tcp is not None and e.tcp.ok for e in obs.endpoints
    )
    lead = (
        "Nothing worked (no DNS reply, no connection) and no control site was measured."
        if nothing and not obs.controls
        else "The observations do not support a verdict."
    )
    return Verdict(
        Status.INCONCLUSIVE,
        reasons=(lead, *dns.doubts, *details),
        https_ok=https_ok,
        notes=tuple(notes),
    )


def _own_failure(
    https: Sequence[_Outcome], plain: Sequence[_Outcome], notes: Sequence[str]
) -> Verdict | None:
    """The verdict when HTTPS fails only the way it fails from the control helper too.

    Then the failure is the site's: ``down``, unless plaintext HTTP serves a
    page (2xx: a site without working HTTPS is still reachable over HTTP).
    """
    own = [o for o in (*https, *plain) if o.kind == "down"]
    if not own or not all(o.kind in ("down", "server_error") for o in https):
        return None
    details = [o.note for o in (*https, *plain)]
    page = next(
        (
            o
            for o in _users_view(plain)
            if o.kind == "ok" and o.response is not None and 200 <= (o.response.status or 0) < 300
        ),
        None,
    )
    if page is not None:
        lead = f"{page.note[:-1]}; HTTPS fails from the control helper too (the site's own)."
        return Verdict(
            Status.ACCESSIBLE, reasons=(lead, *details), https_ok=False, notes=tuple(notes)
        )
    lead = "The control helper outside this network meets the same failures: the site is down."
    https_ok = False if https else None
    return Verdict(Status.DOWN, reasons=(lead, *details), https_ok=https_ok, notes=tuple(notes))


def _users_view(outcomes: Sequence[_Outcome]) -> Sequence[_Outcome]:
    """The endpoints a user of this vantage would dial: those its resolver gave.

    Addresses only the control resolver returned are differentials (do they
    work from here? then the censor keyed on DNS, not IP); they must not make
    a path look usable when every address the vantage resolver gives fails.
    When the vantage resolver gave no usable address, all endpoints count.
    """
    mine = [o for o in outcomes if "vantage" in o.endpoint.origins]
    return mine or outcomes


def _partial(outcomes: Sequence[_Outcome]) -> list[str]:
    """Notes on the endpoints that failed on a path that still works.

    A browser retries the next address, so a path works while one address
    does; the failing ones are named so an analyst can see them.
    """
    if not any(o.kind == "ok" for o in _users_view(outcomes)):
        return []
    failed = [o.note for o in outcomes if o.kind != "ok" and not _is_blockpage(o)]
    if not failed:
        return []
    return ["Some addresses failed while others worked:", *failed]


def _is_blockpage(o: _Outcome) -> bool:
    return o.finding is not None and o.finding.fingerprint is not None


def _path_findings(outcomes: Sequence[_Outcome]) -> list[Finding]:
    """A path is blocked when no endpoint on it worked; partial failures are noted only."""
    if not outcomes or any(o.kind == "ok" for o in _users_view(outcomes)):
        return []
    return [o.finding for o in outcomes if o.finding is not None]


def _blocked(
    findings: Sequence[Finding],
    reasons: Sequence[str],
    https: Sequence[_Outcome],
    dns: _DNSResult,
    notes: Sequence[str],
) -> Verdict:
    methods = sorted({f.method for f in findings}, key=_ORDER.__getitem__)
    triggers = {f.trigger for f in findings if f.trigger is not None}
    trigger = min(triggers, key=_TRIGGER_ORDER.__getitem__) if triggers else None
    prints = [f.fingerprint for f in findings if f.fingerprint is not None]
    prints.sort(key=lambda fp: fp.scope == "optin")  # a state/ISP page names the blocking
    lead: list[str] = []
    if prints and all(fp.scope == "optin" for fp in prints):
        lead.append(
            f"The blockpage is an opt-in filter the subscriber chose ({prints[0].description}); "
            "this is not state censorship."
        )
    usable = any(
        o.kind == "ok" and (o.endpoint.address in dns.vantage_legit or not dns.vantage_legit)
        for o in https
    )
    https_ok = usable and not any(f.path in ("dns", "https") for f in findings)
    if https_ok:
        lead.append("HTTPS to the site still works; only plaintext HTTP is interfered with.")
    return Verdict(
        Status.BLOCKED,
        blocking=tuple(methods),
        trigger=trigger,
        reasons=tuple(lead) + tuple(reasons),
        blockpage=prints[0].id if prints else None,
        https_ok=https_ok if https else None,
        notes=tuple(notes),
    )


def _label(e: EndpointObservation) -> str:
    return netaddr.endpoint_label(e.address, e.port)


def _join(addresses: Iterable[str]) -> str:
    return ", ".join(addresses)
