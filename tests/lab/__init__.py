"""The censorship lab: real network namespaces, real servers, a real DPI censor.

See docs/testing.md. Entry points: :func:`tests.lab.topology.running_lab`,
:data:`tests.lab.scenarios.SCENARIOS` and ``python -m tests.lab``.
"""
