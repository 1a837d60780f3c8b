"""Run ``python -m probe collector serve`` as a real process on a real socket.

Shared by the upload fault tests and the lab test: the collector must be the
one an operator runs (own process, signals, uvicorn), and its log is kept in
a file so tests can read (and grep for tokens in) everything it wrote.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def probe_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }


class CollectorProcess:
    """``probe collector serve`` on ``listen``; ``url`` is known once it listens."""

    def __init__(
        self,
        db: str,
        log: Path,
        *,
        listen: str = "127.0.0.1:0",
        prefix: Sequence[str] = (),
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = {**probe_env(), **(env or {})}
        self.db = db
        self.log = log
        self.listen = listen
        self.prefix = tuple(prefix)
        self.extra = tuple(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        offset = self.log.stat().st_size if self.log.exists() else 0
        args = [*self.prefix, sys.executable, "-m", "probe", "-v", "collector", "serve"]
        args += ["--db", self.db, "--listen", self.listen, *self.extra]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=out, env=self.env, cwd=ROOT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (https?://\S+)", self.output()[offset:])
            if found:
                self.url = found.group(1)
                self.listen = self.url.split("://", 1)[1]  # a restart keeps the port
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"collector did not start: {self.output()}")

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what the database committed is all that is left."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)


def probe(
    *args: str,
    prefix: Sequence[str] = (),
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m probe ARGS`` in its own process."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "probe", *args],
        capture_output=True,
        text=True,
        env={**probe_env(), **(env or {})},
        cwd=ROOT,
        timeout=timeout,
    )


def spawn(*args: str, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "probe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=probe_env(),
        cwd=ROOT,
    )
