"""Developer entry to the lab.

    python -m tests.lab list
    python -m tests.lab shell SCENARIO [-c COMMAND]

``shell`` builds the lab, applies the scenario, prints the addresses, the
resolvers, the CA and a ready-to-paste probe command, then opens an
interactive shell inside the vantage namespace (or runs COMMAND there). The
lab is torn down when the shell exits. Needs root; wrap it in
``unshare --net`` to keep even the lab's veth pairs out of the host.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.lab.scenarios import SCENARIOS, Expect, applied
from tests.lab.servers import REPO_ROOT
from tests.lab.topology import Lab, running_lab


def describe(expect: Expect) -> str:
    methods = ",".join(sorted(expect.blocking)) or "-"
    more = "" if expect.exact else ",..."
    return f"{expect.verdict} [{methods}{more}] trigger={expect.trigger or '-'}"


def cmd_list() -> int:
    width = max(map(len, SCENARIOS))
    for scenario in SCENARIOS.values():
        print(f"{scenario.name:<{width}}  {describe(scenario.expect)}")
        for suffix, expect in scenario.by_suffix.items():
            print(f"{'':<{width}}    *{suffix}: {describe(expect)}")
        print(f"{'':<{width}}    {scenario.summary}")
    return 0


def banner(lab: Lab, scenario: str) -> str:
    net = lab.net
    spec = SCENARIOS[scenario]
    lines = [
        f"reachprobe lab {lab.run_id}: scenario {scenario} ({spec.summary})",
        f"  namespaces       {' -> '.join(lab.namespaces)}",
        f"  vantage          {net.vantage} (default route via {net.gateway})",
        f"  routers          {' '.join(net.routers)} (hops 1-3; the isp, hop 2, is the censor)",
        f"  ISP resolver     {net.isp_resolver}      control resolver {net.internet_resolver}",
        f"  blockpage server {net.blockpage}",
        f"  lab CA           {lab.ca_pem}",
        f"  lab directory    {lab.directory} (server logs, configs)",
        "  sites:",
        *(f"    {name:<16} {' '.join(addrs)}" for name, addrs in net.hosts.items()),
        f"  expected         {describe(spec.expect)}",
        f"  stored results   {lab_data(lab) / 'reachprobe' / 'probe.db'} (gone with the lab)",
        "  try:",
        "    probe check --platform x $LAB_CHECK_FLAGS",
        "    " + shlex.join(lab.probe_argv(spec.domains, platform=spec.platform)[4:]),
        f"    curl --cacert $LAB_CA --resolve x.com:443:{net.hosts['x.com'][0]} https://x.com/"
        " -o /dev/null -w '%{http_code}\\n'",
        f"    ip netns exec {lab.isp} iptables-save    # the censor's rules",
    ]
    return "\n".join(lines)


def lab_data(lab: Lab) -> Path:
    """The shell's data directory: what a check stores there is a lab result and
    must never join the user's own measurements (nor be uploaded with them)."""
    return lab.directory / "data"


def cmd_shell(scenario: str, command: str | None) -> int:
    if os.geteuid() != 0:
        print("python -m tests.lab shell needs root", file=sys.stderr)
        return 2
    with running_lab() as lab, applied(lab, scenario):
        print(banner(lab, scenario), flush=True)
        # No way for a lab result into the user's database: not $PROBE_DB, not
        # a config's [storage], not the default file (XDG_DATA_HOME is the lab's).
        own = ("PROBE_DB", "REACHPROBE_CONFIG", "REACHPROBE_STORAGE_URL", "STATE_DIRECTORY")
        env = dict(
            {k: v for k, v in os.environ.items() if k not in own},
            XDG_DATA_HOME=str(lab_data(lab)),
            # `probe` is this interpreter's, even when its venv is not activated.
            PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            LAB_CHECK_FLAGS=shlex.join(lab.check_flags()),
            LAB_VANTAGE=lab.vantage,
            LAB_ISP=lab.isp,
            LAB_INTERNET=lab.internet,
            LAB_ISP_RESOLVER=lab.net.isp_resolver,
            LAB_CONTROL_RESOLVER=lab.net.internet_resolver,
            LAB_CA=str(lab.ca_pem),
            LAB_DIR=str(lab.directory),
            PS1=f"[lab {scenario}] \\w# ",
        )
        shell = shutil.which("bash") or "/bin/sh"
        argv = ["ip", "netns", "exec", lab.vantage, shell]
        argv += (
            ["-c", command]
            if command is not None
            else (["--norc", "-i"] if shell.endswith("bash") else ["-i"])
        )
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the shell
        try:
            return subprocess.run(argv, env=env, cwd=REPO_ROOT, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab", description="The reachprobe censorship lab."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the scenarios and what the probe must conclude")
    shell = sub.add_parser(
        "shell", help="start the lab with SCENARIO and open a shell in the vantage"
    )
    shell.add_argument("scenario", choices=sorted(SCENARIOS))
    shell.add_argument(
        "-c", dest="command", help="run COMMAND in the vantage instead of an interactive shell"
    )
    args = parser.parse_args(argv)
    if args.command == "list":
        return cmd_list()
    return cmd_shell(args.scenario, args.command)


if __name__ == "__main__":
    sys.exit(main())
