# syntax=docker/dockerfile:1
# reachprobe daemon image: `probe run` on a VPS or a Raspberry Pi.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t reachprobe .
#   docker run -d --name reachprobe --restart unless-stopped \
#     --cap-drop ALL --read-only --tmpfs /tmp \
#     -v reachprobe-data:/data \
#     -e REACHPROBE_VANTAGE_NAME=pi-lahore -e REACHPROBE_VANTAGE_COUNTRY=PK \
#     -p 127.0.0.1:9816:9816 reachprobe
#
# Capabilities: none are needed (DNS, TCP, TLS and HTTP checks use ordinary
# sockets). Only the optional packet-level features (scapy) need
# `--cap-add NET_RAW`; do not add it otherwise. See docs/deploy.md.
#
# deploy/docker-smoke.sh runs this file's install steps, entrypoint, command
# and health check without a Docker engine; keep the two in step.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the package and its dependencies into a venv ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/reachprobe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probe ./probe
COPY storage ./storage
COPY collectors ./collectors
COPY schedules ./schedules
# All dependencies ship wheels for amd64 and arm64 (no compiler needed).
# The postgres extra: a vantage may store into a shared PostgreSQL (storage.url).
RUN /opt/reachprobe/bin/pip install ".[postgres]" \
 && /opt/reachprobe/bin/probe --version

# ---- runtime: the venv only, as an unprivileged user --------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 reachprobe \
 && useradd --system --uid 10001 --gid reachprobe --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin reachprobe \
 && install -d -o reachprobe -g reachprobe -m 0700 /data
COPY --from=build /opt/reachprobe /opt/reachprobe
ENV PATH=/opt/reachprobe/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REACHPROBE_CONFIG=/etc/reachprobe/reachprobe.toml \
    REACHPROBE_STORAGE_URL=sqlite:////data/probe.db \
    REACHPROBE_METRICS_LISTEN=0.0.0.0:9816
# The commented template; override keys with REACHPROBE_* variables or mount
# your own file over it (read-only is fine; uid 10001 must be able to read it).
# `probe init` writes it 0600 for root: the daemon's user must own it.
RUN probe init /etc/reachprobe/reachprobe.toml \
 && chown reachprobe:reachprobe /etc/reachprobe/reachprobe.toml
USER reachprobe:reachprobe
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9816
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5m --timeout=30s --start-period=2m --retries=3 CMD ["probe", "status", "--health"]
ENTRYPOINT ["probe"]
CMD ["run"]
