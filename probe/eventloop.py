"""The event loop the probe measures on: uvloop when it is installed, else asyncio's.

A list costs the probe CPU per connection (a dozen TCP connections, four TLS
handshakes and six HTTP requests per domain), and asyncio's selector loop and
socket transports do that bookkeeping in Python.  uvloop (libuv, in Cython)
does it in C: about 18 % fewer instructions per fully measured domain in the
lab (docs/benchmarks.md), which matters most on a Raspberry Pi.  It is a
dependency where it has wheels (Linux, macOS); anywhere it cannot be imported,
or with ``REACHPROBE_EVENT_LOOP=asyncio``, the probe runs on asyncio's loop.
The observations do not depend on the loop: the checks' tests run under both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "REACHPROBE_EVENT_LOOP"
"""``asyncio`` forces asyncio's own loop (a fallback, and for comparisons)."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the fastest loop available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop``, or None (asyncio's default) when it cannot be
    imported or the environment asks for asyncio's loop."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
