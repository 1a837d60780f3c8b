"""The closed set of failure names an observation can carry.

Like OONI's failure strings, these are data: stored, exported and compared by
the classifier.  A free-form exception message is never data; an error that
does not map onto a name here becomes ``unknown_error`` (and is logged).
"""

from __future__ import annotations

import enum


class Failure(enum.StrEnum):
    """What went wrong in one network operation."""

    # Generic transport failures (any phase).
    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    EOF = "eof"  # the peer closed the connection before the operation completed
    HOST_UNREACHABLE = "host_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    ADDRESS_UNUSABLE = "address_unusable"  # e.g. loopback/unspecified answer, never dialled

    # DNS.
    DNS_NXDOMAIN = "dns_nxdomain"
    DNS_SERVFAIL = "dns_servfail"
    DNS_REFUSED = "dns_refused"
    DNS_NO_ANSWER = "dns_no_answer"  # NOERROR but no A/AAAA record
    DNS_OTHER_RCODE = "dns_other_rcode"
    DNS_BAD_REPLY = "dns_bad_reply"  # a reply that could not be parsed or did not match the query
    DNS_NO_RESOLVER = "dns_no_resolver"  # no nameserver configured on this host

    # TLS.
    TLS_UNKNOWN_AUTHORITY = "tls_unknown_authority"
    TLS_INVALID_HOSTNAME = "tls_invalid_hostname"
    TLS_EXPIRED_CERTIFICATE = "tls_expired_certificate"
    TLS_INVALID_CERTIFICATE = "tls_invalid_certificate"  # any other verification failure
    TLS_PROTOCOL_ERROR = "tls_protocol_error"  # garbage, alert, or version mismatch

    # HTTP.
    HTTP_PROTOCOL_ERROR = "http_protocol_error"  # a response that is not HTTP
    HTTP_TOO_MANY_REDIRECTS = "http_too_many_redirects"

    # Anything else; the exception type is logged, never stored.
    UNKNOWN_ERROR = "unknown_error"

    @property
    def is_tls_certificate(self) -> bool:
        """True for failures that mean the handshake met a certificate we do not trust."""
        return self in _CERTIFICATE_FAILURES


_CERTIFICATE_FAILURES = frozenset(
    {
        Failure.TLS_UNKNOWN_AUTHORITY,
        Failure.TLS_INVALID_HOSTNAME,
        Failure.TLS_EXPIRED_CERTIFICATE,
        Failure.TLS_INVALID_CERTIFICATE,
    }
)
