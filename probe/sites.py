"""Which hostnames are one site: registrable domains and platform families.

A redirect to another host of the same site (``http://x.com/`` ->
``https://twitter.com/``) is the site's own doing, one to another site may
be a censor's.  The registrable domain comes from the Public Suffix List
(the ``publicsuffixlist`` package ships the list as data, so nothing is
downloaded at run time; its private section counts too, so two users'
``github.io`` pages are two sites).  Families of registrable domains that
belong to one operator come from the shipped ``probe/data/platforms.toml``
(every domain of one platform is one family), not from a list kept here.

Only shipped data is used, never the user's platform files: the classifier
is a pure function and must judge a stored measurement the same way on
every machine.
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import TYPE_CHECKING

from probe import netaddr

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList


@functools.cache
def _suffix_list() -> PublicSuffixList:
    # Imported and parsed on first use: it costs a noticeable fraction of a
    # second, and only checks that meet a cross-host redirect need it.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(host: str) -> str:
    """``www.example.co.uk`` -> ``example.co.uk``; IP literals and bare suffixes as given."""
    host = host.strip("[]").rstrip(".").lower()
    if not host or netaddr.is_ip(host):
        return host
    return _suffix_list().privatesuffix(host) or host


@functools.cache
def families() -> tuple[frozenset[str], ...]:
    """The registrable domains of each shipped platform (one family per platform)."""
    text = resources.files("probe").joinpath("data/platforms.toml").read_text("utf-8")
    found = []
    for table in tomllib.loads(text).values():
        domains = table.get("domains", []) if isinstance(table, dict) else []
        family = frozenset(registrable_domain(str(d)) for d in domains)
        if len(family) > 1:
            found.append(family)
    return tuple(found)


def same_site(a: str, b: str) -> bool:
    """Same registrable domain, or two domains of one platform (x.com, twitter.com)."""
    if a.strip("[]").rstrip(".").lower() == b.strip("[]").rstrip(".").lower():
        return True  # the common case needs no suffix list
    ra, rb = registrable_domain(a), registrable_domain(b)
    return ra == rb or any(ra in family and rb in family for family in families())
