"""User-facing errors and the documented exit statuses.

Every command ends through :func:`probe.cli.main`, which turns a
:class:`ProbeError` into one line on stderr and its exit status; anything else
escaping is a bug and is reported as such (still one line, exit 70).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0  # all accessible / command succeeded
    BLOCKED = 1  # probe check: at least one domain blocked
    USAGE = 2  # bad usage, bad input, bad config
    NOT_ACCESSIBLE = 3  # probe check: down, offline or inconclusive (none blocked)
    STORAGE = 4  # the database is locked, gone or unusable
    COLLECTOR = 5  # the collector could not be reached or refused an upload
    INTERNAL = 70  # a bug: please report it
    PRIVILEGE = 77  # probe trace cannot run here: no raw sockets (root/CAP_NET_RAW) or no scapy
    INTERRUPTED = 130  # Ctrl-C


class ProbeError(Exception):
    """An error the user can act on; its message is one line."""

    exit_status: ExitStatus = ExitStatus.INTERNAL


class UsageError(ProbeError):
    """Bad arguments or input (malformed domain, URL, file, resolver...)."""

    exit_status = ExitStatus.USAGE


class ConfigError(UsageError):
    """An unreadable or invalid configuration file."""


class StorageError(ProbeError):
    exit_status = ExitStatus.STORAGE


class CollectorError(ProbeError):
    exit_status = ExitStatus.COLLECTOR
