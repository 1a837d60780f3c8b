"""Per-protocol checks: one module a protocol, each returning frozen observations and never raising."""
