"""Per-protocol checks: one module a protocol, each returning frozen observations.

A check never raises for network behaviour; it returns an observation with a failure.
"""
