#!/bin/sh
# Exercise what the Docker image runs, without a Docker engine.
#
# Reads the Dockerfile itself (ENV, the `probe init` step, USER uid,
# ENTRYPOINT + CMD, HEALTHCHECK) so the two cannot drift apart, then:
#   1. installs the package into a fresh venv as the build stage does
#      (offline: --no-index --no-deps against the system site-packages,
#      where the build stage would download wheels);
#   2. runs the image's `probe init`, then `probe config check` with the
#      image's environment;
#   3. starts ENTRYPOINT+CMD as the image's non-root uid in a private network
#      namespace (loopback only; the resolver points at a closed loopback
#      port), waits for the first stored check, runs the HEALTHCHECK
#      command, stops it with the STOPSIGNAL and expects exit 0.
# Usage: deploy/docker-smoke.sh   (as root; needs unshare, setpriv, python3)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SMOKE_IN_NETNS:-}" ]; then
    exec unshare --net env SMOKE_IN_NETNS=1 sh -c 'ip link set lo up && exec "$0"' "$0"
fi

PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/reachprobe-smoke.XXXXXX)
chmod 0755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
say() { printf 'smoke: %s\n' "$*"; }

# --- what the Dockerfile says -------------------------------------------------
eval "$("$PY" - "$ROOT/Dockerfile" <<'PYEOF'
import json, re, shlex, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
runtime = text.split("\nFROM ")[-1]  # the last stage is the image
env = {}
for line in re.findall(r"^ENV (.+)$", runtime, re.M):
    for item in shlex.split(line):
        key, _, value = item.partition("=")
        env[key] = value
def array(instr):
    found = re.search(rf"^{instr}\b.*?(\[.*\])\s*$", runtime, re.M)
    return json.loads(found.group(1))
user = re.search(r"^USER (\S+)", runtime, re.M).group(1).split(":")[0]
uid = re.search(rf"--uid (\d+)", runtime).group(1)
init = re.search(r"^RUN (probe init .+)$", runtime, re.M).group(1)
stop = re.search(r"^STOPSIGNAL (\S+)", runtime, re.M).group(1)
out = {
    "IMAGE_ENV": " ".join(f"{k}={v}" for k, v in env.items() if k != "PATH"),
    "IMAGE_UID": uid, "IMAGE_USER": user, "IMAGE_INIT": init, "IMAGE_STOP": stop,
    "IMAGE_RUN": " ".join(array("ENTRYPOINT") + array("CMD")),
    "IMAGE_HEALTH": " ".join(array("HEALTHCHECK")),
}
for k, v in out.items():
    print(f"{k}={shlex.quote(v)}")
PYEOF
)"
say "image env: $IMAGE_ENV"
say "entrypoint+cmd: $IMAGE_RUN; healthcheck: $IMAGE_HEALTH; user $IMAGE_USER (uid $IMAGE_UID)"

# --- 1. the build stage's install ---------------------------------------------
# Only what the Dockerfile COPYs goes into the build context.
mkdir -p "$WORK/src"
for item in $(sed -n 's#^COPY \([^-].*\) \./.*#\1#p' "$ROOT/Dockerfile"); do
    cp -r "$ROOT/$item" "$WORK/src/"
done
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m venv --system-site-packages "$WORK/opt"
# When $PY is itself a venv's (e.g. .ci/run's .venv), its dependencies are not
# "system" site-packages: list its site-packages directory (a plain path line,
# so its editable install of this checkout is not activated).
"$PY" -c 'import sys, sysconfig; sys.prefix != sys.base_prefix and print(sysconfig.get_paths()["purelib"])' \
    >"$("$WORK/opt/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-venv.pth"
if ! "$WORK/opt/bin/pip" install --quiet --no-index --no-deps --no-build-isolation \
        --disable-pip-version-check "$WORK/src" >"$WORK/pip.log" 2>&1; then
    if ! grep -q "invalid command 'bdist_wheel'" "$WORK/pip.log"; then cat "$WORK/pip.log"; exit 1; fi
    # Offline without a wheel builder: install the copied packages and the
    # console script by hand (the image's pip builds a real wheel).
    say "no offline wheel builder: installing the COPYed packages by hand"
    site=$("$WORK/opt/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for pkg in probe storage collectors schedules; do cp -r "$WORK/src/$pkg" "$site/"; done
    printf '#!%s\nfrom probe.cli import main\nmain()\n' "$WORK/opt/bin/python" >"$WORK/opt/bin/probe"
    chmod 0755 "$WORK/opt/bin/probe"
fi
export PATH="$WORK/opt/bin:$PATH"
cd "$WORK"  # not the source tree: the installed package must be complete
probe --version

# --- 2. the runtime stage's steps, with the image's environment ----------------
mkdir -p "$WORK/etc" "$WORK/data"
IMAGE_INIT=$(printf '%s' "$IMAGE_INIT" |
    sed "s#/etc/reachprobe#$WORK/etc#g; s#$IMAGE_USER:$IMAGE_USER#$IMAGE_UID:$IMAGE_UID#g")
sh -c "$IMAGE_INIT"
# shellcheck disable=SC2086
set -- $IMAGE_ENV
for assignment in "$@"; do
    value=$(printf '%s' "${assignment#*=}" | sed "s#/etc/reachprobe#$WORK/etc#; s#////data#///$WORK/data#")
    export "${assignment%%=*}=$value"
done
export REACHPROBE_VANTAGE_NAME=smoke REACHPROBE_TARGETS_PLATFORMS= \
    REACHPROBE_TARGETS_DOMAINS=smoke.test REACHPROBE_CHECKS_RESOLVER=127.0.0.1:9 \
    REACHPROBE_CHECKS_CONTROL_RESOLVERS=127.0.0.1:9 REACHPROBE_CHECKS_CONTROL_DOMAINS=control.test \
    REACHPROBE_CHECKS_TIMEOUT=2s REACHPROBE_SCHEDULE_INTERVAL=1h REACHPROBE_SCHEDULE_JITTER=0 \
    REACHPROBE_METRICS_LISTEN=127.0.0.1:9816 HOME="$WORK/data"
probe config check
chown -R "$IMAGE_UID:$IMAGE_UID" "$WORK/data"
chmod 0700 "$WORK/data"
cd "$WORK/data"  # WORKDIR /data

# --- 3. ENTRYPOINT + CMD as the image's user; health check; stop ---------------
AS_USER="setpriv --reuid $IMAGE_UID --regid $IMAGE_UID --clear-groups --"
if ! $AS_USER probe --version >/dev/null 2>&1; then
    # This machine's Python lives where uid $IMAGE_UID cannot read it (e.g.
    # under /root); the image's venv is world-readable. Keep root but drop
    # every capability, which is what the image's user has.
    say "uid $IMAGE_UID cannot run this host's Python: running as root without capabilities"
    AS_USER="setpriv --inh-caps=-all --bounding-set=-all --"
    chown -R 0:0 "$WORK/data" "$WORK/etc"
fi
# shellcheck disable=SC2086
$AS_USER $IMAGE_RUN 2>"$WORK/daemon.log" &
PID=$!  # setpriv execs probe: this is the daemon itself
trap 'kill -9 $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
i=0
until grep -q "smoke.test: .*measurement" "$WORK/daemon.log"; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 $PID 2>/dev/null; then
        cat "$WORK/daemon.log"; say "no measurement stored"; exit 1
    fi
    sleep 0.1
done
# shellcheck disable=SC2086
$AS_USER $IMAGE_HEALTH || { cat "$WORK/daemon.log"; say "health check failed"; exit 1; }
"$PY" -c "import urllib.request as u; t = u.urlopen('http://127.0.0.1:9816/metrics').read().decode(); assert 'reachprobe_verdict_total{' in t, t"
kill -s "${IMAGE_STOP#SIG}" $PID
status=0
wait $PID || status=$?
cat "$WORK/daemon.log"
[ "$status" -eq 0 ] || { say "exit status $status after $IMAGE_STOP"; exit 1; }
if $AS_USER $IMAGE_HEALTH 2>/dev/null; then say "health check passes with no daemon"; exit 1; fi
ls -l "$WORK/data"
say "ok"
