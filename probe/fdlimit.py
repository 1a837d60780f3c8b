"""Fitting concurrent checks into the process's file-descriptor limit.

A domain in flight holds sockets: DNS queries to every resolver, and per
address the TCP connection, the control-SNI handshake (and a chain capture),
the HTTPS fetch and two plaintext fetches.  Under ``ulimit -n 256``, 64
domains at once ran out of descriptors (EMFILE) and the run died with
nothing printed.  So the soft limit is first raised to the hard one (any
process may), then the number of domains measured at once is lowered to
what fits, or the run is refused up front when not even one check fits.
"""

from __future__ import annotations

import logging
import resource
from typing import TYPE_CHECKING

from probe.errors import UsageError

if TYPE_CHECKING:
    from probe.check import CheckOptions

log = logging.getLogger(__name__)

RESERVED = 32  # stdio, the database, the event loop, logging, the control sites
PER_ADDRESS = 5  # TCP 443 + TLS, control-SNI TLS (or chain capture), HTTPS, 2x HTTP
PER_RESOLVER = 2  # A and AAAA at once


def per_domain(max_addresses_per_family: int, resolvers: int, helpers: int) -> int:
    """Descriptors one domain's check may hold at once (both families dialled)."""
    return 2 * max_addresses_per_family * PER_ADDRESS + PER_RESOLVER * (resolvers + helpers)


def allowed_concurrency(
    options: CheckOptions, requested: int, *, control_sites_each: bool = False
) -> int:
    """How many domains may be measured at once: ``requested``, fitted to RLIMIT_NOFILE.

    Shared by ``probe check`` (one run, the control sites checked once) and
    the daemon (``control_sites_each``: every scheduled check runs its own
    control-site handshakes beside the domain's).  Raises UsageError when not
    even one check fits.
    """
    per_check = per_domain(
        options.max_addresses_per_family,
        1 + len(options.control_resolvers),
        len(options.helpers),
    )
    if control_sites_each:
        per_check += len(options.control_domains) * (PER_RESOLVER + 1)
    return fit_concurrency(requested, per_check)


def descriptor_limit() -> int | None:
    """RLIMIT_NOFILE after raising the soft limit to the hard one (None: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. an unlimited hard limit the kernel caps
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def fit_concurrency(requested: int, per_check: int) -> int:
    """``requested``, lowered (with a warning) to what the descriptor limit holds.

    Raises UsageError when not even one check fits.
    """
    limit = descriptor_limit()
    if limit is None:
        return requested
    room = (limit - RESERVED) // per_check
    if room < 1:
        raise UsageError(
            f"only {limit} file descriptors allowed (ulimit -n): "
            f"a check needs about {RESERVED + per_check}"
        )
    if room < requested:
        log.warning(
            "concurrency %d lowered to %d: %d file descriptors allowed (ulimit -n)",
            requested,
            room,
            limit,
        )
    return min(requested, room)
