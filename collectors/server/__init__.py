"""The collector: a web service that receives measurements from many probes.

``create_app`` builds the Starlette app (see its docstring for how to add
routes, e.g. the dashboard); ``serve`` runs it under uvicorn.  Importing this
package imports the web stack: only ``probe collector serve`` and the tests
do, never the daemon or ``probe --help``.
"""

from collectors.server.app import Settings, create_app

__all__ = ["Settings", "create_app"]
