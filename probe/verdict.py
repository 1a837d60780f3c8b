"""The classifier's output: a verdict, the blocking methods and the trigger.

These three closed vocabularies are the product's contract with its users
(CLI, JSON, CSV, database); see docs/methodology.md for what each means.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    ACCESSIBLE = "accessible"
    BLOCKED = "blocked"
    DOWN = "down"  # the site itself is unreachable from everywhere we can tell
    OFFLINE = "offline"  # this vantage cannot reach the internet at all
    INCONCLUSIVE = "inconclusive"


class Method(enum.StrEnum):
    """How the censor interfered; the order here is the order of reporting."""

    DNS_NXDOMAIN = "dns.nxdomain"
    DNS_SERVFAIL = "dns.servfail"
    DNS_REFUSED = "dns.refused"
    DNS_NO_ANSWER = "dns.no_answer"
    DNS_TIMEOUT = "dns.timeout"
    DNS_BOGON = "dns.bogon"
    DNS_MISMATCH = "dns.mismatch"
    DNS_INJECTION = "dns.injection"
    TCP_TIMEOUT = "tcp.timeout"
    TCP_REFUSED = "tcp.refused"
    TCP_RESET = "tcp.reset"
    TLS_RESET = "tls.reset"
    TLS_TIMEOUT = "tls.timeout"
    TLS_EOF = "tls.eof"
    TLS_INVALID_CERT = "tls.invalid_cert"
    HTTP_RESET = "http.reset"
    HTTP_TIMEOUT = "http.timeout"
    HTTP_EOF = "http.eof"
    HTTP_BLOCKPAGE = "http.blockpage"
    HTTP_REDIRECT = "http.redirect"
    HTTP_DIFF = "http.diff"
    THROTTLE = "throttle"


class Trigger(enum.StrEnum):
    """What the censor keyed on, as told apart by the differentials."""

    DNS = "dns"
    IP = "ip"
    SNI = "sni"
    HOST = "host"


# Bump when a change to the classifier can change a verdict; stored with every
# verdict so re-classified rows can be told from old ones.
# 2: control helper rows, Public Suffix List
# 3: notes apart from reasons (never deciding); `down` needs the control's A
CLASSIFIER_VERSION = "3"


@dataclass(frozen=True)
class Verdict:
    status: Status
    blocking: tuple[Method, ...] = ()  # empty unless status is BLOCKED
    trigger: Trigger | None = None
    reasons: tuple[str, ...] = ()  # human sentences explaining the decision
    blockpage: str | None = None  # id of the matched blockpage fingerprint
    https_ok: bool | None = None  # HTTPS worked (said when only plaintext HTTP is blocked)
    classifier_version: str = CLASSIFIER_VERSION
    notes: tuple[str, ...] = ()  # side details that did not decide the verdict
