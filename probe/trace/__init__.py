"""``probe trace``: where on the path a target is interfered with, and by what.

One concept per module: :mod:`.observations` (what was seen, stored),
:mod:`.wire` (dissecting received packets), :mod:`.sniffer` (raw sockets),
:mod:`.payloads` (ClientHello / HTTP request bytes and their splits),
:mod:`.probes` (TTL-limited sends on kernel sockets), :mod:`.dnsprobe`,
:mod:`.locate` (the pure decision: interference, censor hop, injected or not),
:mod:`.run` (the procedure) and :mod:`.render`. Nothing here is imported by
``probe check``; scapy is imported only when a trace dissects a packet.
"""
