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

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

STATIC = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/dashboard/v1"


def routes(*, read_token: str | None = None, platform: str = "x") -> list[BaseRoute]:
    """The dashboard's routes; with ``read_token`` every one of them needs it.

    ``platform``: the one shown first (its endpoints in its own order).
    """
    from collectors.dashboard.api import build_routes

    return build_routes(read_token=read_token, platform=platform)
