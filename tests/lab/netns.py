"""Primitives for acting inside a named network namespace.

Two ways in: run a command under ``ip netns exec`` (for real tools such as
dnsmasq, nginx, curl and the probe itself), or run a Python callable in a
thread that has ``setns()``-ed into the namespace, so tests can open sockets
from the vantage point without paying for an interpreter start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The lab could not be built or changed; the message says which step failed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    """Run a short command and return its stdout; a failure names the command and its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} -> exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def ns_run(ns: str, *argv: str, check: bool = True) -> str:
    return run(ns_argv(ns, argv), check=check)


def die_with_parent() -> None:
    """For a lab process: get SIGTERM when the process that started it dies, so a
    killed test run cannot leave it behind (``ip netns exec`` execs, so the parent
    is the lab's Python process)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(0)


def call_in(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread whose network namespace is ``ns``.

    setns() only moves the calling thread, so the caller's own namespace is
    untouched; sockets created by ``fn`` stay bound to ``ns`` for their lifetime.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
