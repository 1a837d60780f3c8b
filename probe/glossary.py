"""Plain words for every verdict, blocking method and trigger.

One source for ``probe explain``, the compact check output and the glossary
in docs/methodology.md (a test keeps the docs equal to :func:`markdown`).
Written for a reader who is not a network engineer: what a user of the
network experiences, and what the censor did, without jargon left unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.verdict import Method, Status, Trigger


@dataclass(frozen=True)
class Term:
    name: str  # as the probe prints and stores it, e.g. "tls.reset"
    short: str  # a few words, used in the one-line result, e.g. "TLS reset"
    plain: str  # one or two sentences a journalist can quote


_STATUS = {
    Status.ACCESSIBLE: (
        "reachable",
        "The site loaded from this network: a secure (HTTPS) connection was made to one of its "
        "real addresses, with a valid certificate, and it answered normally.",
    ),
    Status.BLOCKED: (
        "blocked",
        "Something on this network interfered with the site: the probe saw one of the blocking "
        "methods below, and checks made beside it show the site itself works.",
    ),
    Status.DOWN: (
        "the site itself is down",
        "The site itself seems broken, not blocked: its name does not resolve anywhere, or its "
        "servers only answer with errors.",
    ),
    Status.OFFLINE: (
        "this network reaches no control site",
        "This network could not reach the internet at all (none of the well-known control sites "
        "answered), so nothing can be said about the site.",
    ),
    Status.INCONCLUSIVE: (
        "no verdict possible",
        "The observations do not support a verdict either way (for example nothing answered and "
        "there was nothing to compare with); the reasons say what was seen.",
    ),
}

_METHODS = {
    Method.DNS_NXDOMAIN: (
        "name reported as non-existent",
        "This network's DNS server said the name does not exist (NXDOMAIN), while a DNS server "
        "outside the network found it: blocking by DNS.",
    ),
    Method.DNS_SERVFAIL: (
        "DNS server failure",
        "This network's DNS server answered with a failure (SERVFAIL) for this name only, while "
        "a DNS server outside the network answered: blocking by DNS.",
    ),
    Method.DNS_REFUSED: (
        "DNS refused",
        "This network's DNS server refused to look up this name (REFUSED), while a DNS server "
        "outside the network answered: blocking by DNS.",
    ),
    Method.DNS_NO_ANSWER: (
        "DNS gave no address",
        "This network's DNS server said the name exists but gave no address for it, while a DNS "
        "server outside the network gave addresses: blocking by DNS.",
    ),
    Method.DNS_TIMEOUT: (
        "DNS query unanswered",
        "Questions about this name to this network's DNS server went unanswered, while a DNS "
        "server outside the network answered: blocking by DNS.",
    ),
    Method.DNS_BOGON: (
        "DNS gave a fake local address",
        "This network's DNS server answered with an address that cannot be on the internet "
        "(such as 127.0.0.1), so the site cannot be reached: blocking by DNS.",
    ),
    Method.DNS_MISMATCH: (
        "DNS gave a wrong address",
        "This network's DNS server answered with addresses that are not the site's (they differ "
        "from what a DNS server outside the network gives, and do not prove to be the site): "
        "blocking by DNS, often pointing to a blockpage.",
    ),
    Method.DNS_INJECTION: (
        "forged DNS answer",
        "A forged answer to the question about this name arrived before the real one: equipment "
        "on the path watches DNS traffic and answers for the real server (DNS injection).",
    ),
    Method.TCP_TIMEOUT: (
        "connection silently dropped",
        "Attempts to connect to the site's addresses got no answer at all, while other sites "
        "work: the traffic to those addresses is dropped (blocking by IP address).",
    ),
    Method.TCP_REFUSED: (
        "connection refused",
        "Attempts to connect to the site's addresses were refused at once, while other sites "
        "work: the network rejects connections to those addresses (blocking by IP address).",
    ),
    Method.TCP_RESET: (
        "connection cut",
        "Connections to the site's addresses were cut right after they opened (blocking by IP "
        "address).",
    ),
    Method.TLS_RESET: (
        "TLS reset",
        "The connection was cut as soon as the site's name was seen in the start of the "
        "encrypted connection (the TLS handshake), while the same server answered under another "
        "name.",
    ),
    Method.TLS_TIMEOUT: (
        "TLS stalled",
        "The encrypted connection never got past its first message once the site's name was "
        "in it: the traffic was dropped in silence.",
    ),
    Method.TLS_EOF: (
        "TLS closed",
        "The connection was closed during the start of the encrypted connection (the TLS "
        "handshake) that carried the site's name.",
    ),
    Method.TLS_INVALID_CERT: (
        "fake certificate",
        "The secure connection presented a certificate that is not the site's (it is not signed "
        "by a trusted authority for that name): someone in between is impersonating the site, "
        "or serves a blockpage in its place.",
    ),
    Method.HTTP_RESET: (
        "web request cut",
        "The connection was cut when the web request for the site was sent, while the same "
        "server answered a request for another name.",
    ),
    Method.HTTP_TIMEOUT: (
        "web request unanswered",
        "The web request for the site got no answer, while the same server answered a request "
        "for another name.",
    ),
    Method.HTTP_EOF: (
        "web request closed",
        "The connection was closed when the web request for the site was sent, before any answer.",
    ),
    Method.HTTP_BLOCKPAGE: (
        "blockpage",
        "Instead of the site, a page saying it is blocked (a blockpage) was shown; the probe "
        "recognised it by its known wording or address.",
    ),
    Method.HTTP_REDIRECT: (
        "redirected elsewhere",
        "The unencrypted web request for the site was sent to another site instead.",
    ),
    Method.HTTP_DIFF: (
        "page replaced",
        "The unencrypted web page differs markedly from the same page fetched securely: the page "
        "was replaced or changed on the way.",
    ),
    Method.THROTTLE: (
        "slowed down",
        "Downloads from the site were at least ten times slower than from the same server under "
        "another name: the site is deliberately slowed down (throttled).",
    ),
}

_TRIGGERS = {
    Trigger.DNS: (
        "DNS blocking",
        "The censor acts on the DNS question: the name look-up is what is blocked or falsified. "
        "Using another DNS server (or encrypted DNS) usually gets around it.",
    ),
    Trigger.IP: (
        "IP blocking",
        "The censor acts on the server's address: anything at those addresses is blocked, "
        "whatever name is asked for.",
    ),
    Trigger.SNI: (
        "SNI filtering",
        "The censor reads the site's name in the start of the encrypted connection (the Server "
        "Name Indication, SNI) and acts on it: filtering by name, even though the content is "
        "encrypted.",
    ),
    Trigger.HOST: (
        "Host filtering",
        "The censor reads the site's name in unencrypted web requests (the Host header) and acts "
        "on it; the secure (HTTPS) version of the site may still work.",
    ),
}


def _terms() -> dict[str, Term]:
    out: dict[str, Term] = {}
    for table in (_STATUS, _METHODS, _TRIGGERS):
        for key, (short, plain) in table.items():
            out[str(key)] = Term(str(key), short, plain)
    return out


TERMS: dict[str, Term] = _terms()


def term(name: str) -> Term | None:
    """The entry for a verdict, method or trigger name (case-insensitive)."""
    return TERMS.get(name.strip().lower())


def method_words(method: Method) -> str:
    return _METHODS[method][0]


def trigger_words(trigger: Trigger | None) -> str:
    return _TRIGGERS[trigger][0] if trigger is not None else "blocking"


def markdown() -> str:
    """The glossary tables as docs/methodology.md carries them."""
    lines: list[str] = []
    for title, table in (("verdict", _STATUS), ("method", _METHODS), ("trigger", _TRIGGERS)):
        lines += [f"| {title} | in short | in plain words |", "|---|---|---|"]
        lines += [f"| `{key}` | {short} | {plain} |" for key, (short, plain) in table.items()]
        lines.append("")
    return "\n".join(lines)
