"""The control helper: the same URL measured from outside the censor.

It speaks OONI's Web Connectivity test-helper protocol (ooni/spec
``nettests/ts-017-web-connectivity.md``), so reachprobe can ask OONI's public
helpers and OONI probes can ask ours.  :mod:`.protocol` is the wire format
(pure), :mod:`.measure` the helper's measurement (it reuses
:mod:`probe.checks`), :mod:`.client` the probe's side, :mod:`.asn` the
optional IP→ASN database and :mod:`.server` the HTTP endpoint (Starlette,
imported only by ``probe helper serve``).
"""
