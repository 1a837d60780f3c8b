"""`probe import ooni` as a user runs it: standard input, a file with nothing
importable, and a small gzip file that expands to a huge line."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from tests.collectors.test_ooni import accessible, dns_blocked

ROOT = Path(__file__).resolve().parents[2]
# Runs the command in this child and reports its peak memory (KiB) on the last line.
DRIVER = (
    "import resource, sys\n"
    "sys.argv = ['probe', *sys.argv[1:]]\n"
    "from probe.cli import main\n"
    "try:\n    main()\n"
    "finally:\n"
    "    print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def probe(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *args], input=stdin, capture_output=True, timeout=120
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _lines(*docs: dict[str, object]) -> bytes:
    return "".join(json.dumps(d) + "\n" for d in docs).encode()


def test_reads_standard_input_plain_and_gzip(tmp_path: Path) -> None:
    db = str(tmp_path / "probe.db")
    code, out, err = probe("import", "ooni", "-", "--db", db, stdin=_lines(accessible()))
    assert code == 0, err
    assert out.startswith("1 measurement(s) imported")
    data = gzip.compress(_lines(accessible(), dns_blocked()))
    code, out, err = probe("import", "ooni", "-", "--db", db, stdin=data)
    assert code == 0, err
    assert out.startswith("1 measurement(s) imported, 1 already present")


def test_a_file_with_nothing_importable_is_an_error(tmp_path: Path) -> None:
    db = str(tmp_path / "probe.db")
    code, out, err = probe("import", "ooni", "/etc/passwd", "--db", db)
    assert code == 2 and out == ""
    assert "probe: nothing importable in /etc/passwd:" in err


def test_a_huge_line_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    """300 MB of one line in a ~300 KB gzip file: it was read whole (GBs)."""
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(_lines(accessible()))
        chunk = b"a" * (1 << 20)
        for _ in range(300):
            handle.write(chunk)
        handle.write(b"\n" + _lines(dns_blocked()))
    assert bomb.stat().st_size < 2_000_000
    code, out, err = probe("import", "ooni", str(bomb), "--db", str(tmp_path / "p.db"))
    assert code == 0, err[-500:]
    assert out.startswith("2 measurement(s) imported") and "1 unreadable" in out
    peak_mib = int(err.rsplit("maxrss", 1)[1]) / 1024
    assert peak_mib < 200, peak_mib
