"""probe.checks.decode: bounded content decoding, benign and hostile bodies."""

from __future__ import annotations

import gzip
import zlib

import pytest

from probe.checks.decode import MAX_CODINGS, BodyDecoder, DecodingError
from tests.probe.checks.httpserver import bomb

PAGE = b"<html><title>t</title>" + bytes(range(256)) * 400 + b"</html>"


def decode_all(body: bytes, coding: str | None, cap: int, step: int = 1000) -> BodyDecoder:
    decoder = BodyDecoder(coding, cap)
    decoder.out = b""  # type: ignore[attr-defined]
    for i in range(0, len(body), step):
        decoder.out += decoder.decode(body[i : i + step])  # type: ignore[attr-defined]
    return decoder


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        (None, lambda b: b),
        ("identity", lambda b: b),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b, wbits=-zlib.MAX_WBITS)),  # raw deflate
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
        ("deflate,gzip", lambda b: gzip.compress(zlib.compress(b))),
        ("GZIP, identity", gzip.compress),
    ],
)
def test_benign_bodies_decode_exactly(coding: str | None, encode: object) -> None:
    decoder = decode_all(encode(PAGE), coding, cap=1 << 20)  # type: ignore[operator]
    assert decoder.out == PAGE and not decoder.capped  # type: ignore[attr-defined]


def test_cap_cuts_a_benign_body_exactly() -> None:
    decoder = decode_all(gzip.compress(PAGE), "gzip", cap=5000)
    assert decoder.out == PAGE[:5000] and decoder.capped  # type: ignore[attr-defined]
    assert decoder.decode(b"more") == b""


@pytest.mark.parametrize("codings", [["gzip"], ["deflate"], ["gzip", "gzip"], ["deflate", "gzip"]])
def test_bombs_stop_at_the_cap(codings: list[str]) -> None:
    body = bomb(codings, 1 << 30)
    decoder = decode_all(body, ", ".join(codings), cap=1 << 20, step=16384)
    assert len(decoder.out) == 1 << 20 and decoder.capped  # type: ignore[attr-defined]


def test_triple_gzip_bomb_is_bounded_at_every_layer() -> None:
    body = bomb(["gzip", "gzip", "gzip"], 1 << 34)  # 16 GiB in about 200 bytes
    assert len(body) < 1000
    decoder = decode_all(body, "gzip, gzip, gzip", cap=1 << 20)
    assert len(decoder.out) == 1 << 20 and decoder.capped  # type: ignore[attr-defined]


def test_inner_layer_budget_caps_even_when_the_final_output_is_small() -> None:
    # The inner gzip member ends at once, and megabytes of padding follow it inside
    # the outer layer: the outer layer's output is counted, not only the final one.
    inner = gzip.compress(b"tiny") + bytes(8 << 20)
    decoder = decode_all(gzip.compress(inner), "gzip, gzip", cap=1 << 20)
    assert decoder.out == b"tiny"  # type: ignore[attr-defined]


def test_bytes_after_the_stream_end_are_ignored() -> None:
    decoder = decode_all(gzip.compress(PAGE) + b"trailing junk", "gzip", cap=1 << 20)
    assert decoder.out == PAGE and decoder.finished  # type: ignore[attr-defined]


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "x-unknown"])
def test_undecodable_codings_pass_through_raw_and_capped(coding: str) -> None:
    body = bytes(3000)
    decoder = decode_all(body, coding, cap=1000)
    assert decoder.out == bytes(1000) and decoder.capped  # type: ignore[attr-defined]


def test_garbage_is_a_decoding_error() -> None:
    with pytest.raises(DecodingError):
        decode_all(b"this is not gzip at all", "gzip", cap=1000)
    with pytest.raises(DecodingError):
        decode_all(b"\xff" * 100, "deflate", cap=1000)


def test_absurd_nesting_is_refused() -> None:
    with pytest.raises(DecodingError):
        BodyDecoder(", ".join(["gzip"] * (MAX_CODINGS + 1)), cap=1000)
