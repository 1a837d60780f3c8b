"""HTTP content decoding that never produces more than the body's read cap.

httpx decodes each received chunk whole, so a 1.8 KB body that is gzip
inside gzip expands to gigabytes in one call, long before any read cap is
looked at.  Here every coding layer is a zlib stream read with
``max_length``: each layer produces only what the next one asks for, every
layer's output is counted, and decoding stops at the cap.  Memory is bounded
by a few read steps and CPU by the cap, whatever the compression ratio or
the nesting.

Codings: ``gzip`` (and ``x-gzip``), ``deflate`` (zlib-wrapped or raw, as
browsers accept) and ``identity``.  Brotli and zstd are not decoded (their
Python bindings have no output bound, and the probe never asks for them): a
layer that cannot be decoded is kept as it arrived, bounded by the raw cap.
"""

from __future__ import annotations

import zlib

MAX_CODINGS = 4
"""More nested codings than this is not a page but an attack: a protocol error."""

STEP = 64 * 1024
"""Bytes one layer asks of the layer below it at a time."""


class DecodingError(Exception):
    """The body is not what its Content-Encoding says (or is nested absurdly deep)."""


class _Layer:
    """One zlib stream: keeps the input it has not consumed yet."""

    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._pending = b""
        self._raw_fallback = raw_fallback  # deflate: zlib-wrapped or raw, told by the first read
        self._started = False
        self.produced = 0

    @property
    def finished(self) -> bool:
        return self._inflate.eof

    def feed(self, data: bytes) -> None:
        self._pending += data

    def read(self, limit: int) -> bytes:
        """At most ``limit`` decoded bytes from the input fed so far."""
        if self.finished or limit <= 0 or not (self._pending or self._started):
            return b""
        try:
            out = self._inflate.decompress(self._pending, limit)
        except zlib.error as exc:
            if self._started or not self._raw_fallback:
                raise DecodingError(str(exc)) from exc
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_fallback = False
            return self.read(limit)
        self._started = True
        self._pending = self._inflate.unconsumed_tail
        self.produced += len(out)
        return out


def _layer(coding: str) -> _Layer | None:
    if coding in ("gzip", "x-gzip"):
        return _Layer(zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return _Layer(zlib.MAX_WBITS, raw_fallback=True)
    return None


class BodyDecoder:
    """Decode a body sent with ``content_encoding`` into at most ``cap`` bytes.

    Feed raw chunks to :meth:`decode`; :attr:`capped` tells that decoding
    stopped at the cap (the body is truncated), :attr:`finished` that the
    outermost stream ended (bytes after it are ignored, like httpx does).
    """

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > MAX_CODINGS:
            raise DecodingError(f"{len(codings)} nested content codings")
        self._layers: list[_Layer] = []
        for coding in reversed(codings):  # the last coding applied is undone first
            layer = _layer(coding)
            if layer is None:
                break  # cannot undo this one: keep it (and those inside it) as sent
            self._layers.append(layer)
        self.cap = cap
        # An inner layer's input is the outer layer's output: compressed data,
        # at most slightly larger than what it decodes to.
        self._budget = 2 * cap + STEP
        self._raw = b""
        self._out = 0
        self.capped = False

    @property
    def finished(self) -> bool:
        return bool(self._layers) and self._layers[0].finished

    def decode(self, raw: bytes) -> bytes:
        """The decoded bytes ``raw`` adds, cut at the cap."""
        if self.capped:
            return b""
        if not self._layers:
            out = raw[: self.cap - self._out]
        else:
            self._raw += raw
            want = self.cap - self._out
            buffer = bytearray()
            while len(buffer) < want and not self.capped:
                part = self._pull(len(self._layers) - 1, want - len(buffer))
                if not part:
                    break
                buffer += part
            out = bytes(buffer)
        self._out += len(out)
        if self._out >= self.cap:
            self.capped = True
        return out

    def _pull(self, index: int, limit: int) -> bytes:
        """Up to ``limit`` bytes out of layer ``index``; b"" when it needs input not yet here."""
        layer = self._layers[index]
        while True:
            room = self._budget - layer.produced
            if room <= 0:
                self.capped = True  # an inner stream larger than any real page's
                return b""
            out = layer.read(min(limit, room))
            if out or layer.finished:
                return out
            if index == 0:
                more, self._raw = self._raw, b""
            else:
                more = self._pull(index - 1, STEP)
            if not more:
                return b""
            layer.feed(more)
