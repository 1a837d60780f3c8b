"""The collector's dashboard: one page, its static assets and the JSON behind it.

Mounted into the collector's Starlette app through its ``extra_routes``
extension point (:func:`routes`); the handlers read the collector's store as
``request.app.state.store``.  Every asset, the chart library included
(static/vendor/), is served from here: the page must work offline and inside
censored networks, where a CDN may be blocked or watched.

Reading is public unless the operator gives a reader token (``--private``):
then every dashboard route asks for it, as HTTP Basic auth (any user name, the
token as password: browsers prompt for it) or ``Authorization: Bearer``.
Nothing served names a token or a vantage's address; the API exposes only
the vantage's name, country, ASN and network label.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from probe.errors import UsageError

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

STATIC = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/dashboard/v1"
# The reader token comes from the environment, never the command line (`ps` shows that).
READ_TOKEN_ENV = "REACHPROBE_DASHBOARD_TOKEN"
MIN_TOKEN = 16


def reader_token(private: bool, environ: Mapping[str, str] = os.environ) -> str | None:
    """The token readers must give (``--private``), or None for a public dashboard."""
    if not private:
        return None
    token = environ.get(READ_TOKEN_ENV, "").strip()
    if len(token) < MIN_TOKEN:
        raise UsageError(
            f"--private needs a reader token of at least {MIN_TOKEN} characters "
            f"in ${READ_TOKEN_ENV}"
        )
    return token


def routes(*, read_token: str | None = None, platform: str = "x") -> list[BaseRoute]:
    """The dashboard's routes; with ``read_token`` every one of them needs it.

    ``platform``: the one shown first (its endpoints in its own order).
    """
    from collectors.dashboard.api import build_routes

    return build_routes(read_token=read_token, platform=platform)
