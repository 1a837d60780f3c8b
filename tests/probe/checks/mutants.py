"""Random edits of wire data, for the differential tests of the fast readers
(``test_dnswire``, ``test_certwire``): hostile input the reader must decline
or read exactly as the library it stands in for."""

from __future__ import annotations

import random
from collections.abc import Callable

Edit = Callable[[random.Random, bytearray, int], None]
"""An edit that knows the format, at an offset (e.g. a DNS compression pointer)."""


def mutated(rng: random.Random, wire: bytes, special: Edit, *, edits: int = 3) -> bytes:
    """``wire`` after 1 to ``edits`` edits: a byte replaced or a bit flipped, the
    rest cut off, a few bytes deleted or inserted, or (twice as often) ``special``."""
    data = bytearray(wire)
    for _ in range(rng.randrange(1, edits + 1)):
        kind = rng.randrange(7) if data else 4
        at = rng.randrange(len(data)) if data else 0
        if kind == 0:
            data[at] = rng.randrange(256)
        elif kind == 1:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del data[at:]
        elif kind == 3:
            del data[at : at + rng.randrange(1, 4)]
        elif kind == 4:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        else:
            special(rng, data, at)
    return bytes(data)
