"""gzip files of payloads that are zero outside known byte spans, written without a compressor.

A statistical map is zero outside its mask and noisy float32 inside: deflate's matching and
Huffman coding shrink the in-mask bytes by ~5 % at ~9 ns a byte (zlib-ng, level 1,
run-length matching), most of the time of writing a map. With the mask known in advance, a
valid deflate stream (RFC 1951) can be laid out instead: each span of data as *stored*
blocks (copied as they are), each run of zeros between spans as a *fixed-Huffman* block of
one literal zero and repeated matches of distance one. Which bytes are zero, and so every
block but the data it copies, depends only on the mask: `plan_sparse_gzip` builds those
constant pieces once per mask, and `sparse_gzip_bytes` interleaves them with the payload's
spans and appends the gzip trailer (CRC-32, length). Any gzip reader decodes the result;
it is deterministic and, for a brain map on the 2 mm MNI grid, made in 2.6 instead of 10.9
ms, in a file 11-18 % larger (the in-mask bytes as they are, plus ~5 % of block headers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - zlib-ng is a declared dependency
    from zlib import crc32

# magic, deflate, no flags, no time stamp, no extra flags, operating system unknown
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
MAX_STORED_BYTES = 65_535  # a stored block's LEN is 16 bits
# Zeros shorter than this are copied with the data around them: coding them costs a block
# (~4 bytes) and a stored header (~5 bytes).
MIN_CODED_ZEROS = 16
MAX_MATCH = 258
# RFC 1951, 3.2.5: match lengths 3-258 as symbol 257 + index, with extra bits
LENGTH_BASES = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83)
LENGTH_BASES += (99, 115, 131, 163, 195, 227, 258)
LENGTH_EXTRA_BITS = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)


@dataclass(frozen=True)
class SparseGzipPlan:
    """The constant parts of the gzip stream of payloads with data only in ``spans``.

    Attributes
    ----------
    n_bytes : int
        Payload length.
    spans : tuple of (int, int)
        Byte ranges of the payload copied into stored blocks (at most `MAX_STORED_BYTES`
        each), in order; every byte outside them must be zero.
    pieces : tuple of bytes
        ``len(spans) + 1`` pieces of the deflate stream: the blocks before each span (its
        zeros and its stored block's header), then the trailing zeros and the final block.
    """

    n_bytes: int
    spans: tuple[tuple[int, int], ...]
    pieces: tuple[bytes, ...]


def plan_sparse_gzip(data_spans: np.ndarray, n_bytes: int) -> SparseGzipPlan:
    """Lay out the deflate stream of payloads of ``n_bytes`` that are zero outside spans.

    Parameters
    ----------
    data_spans : ndarray of int, shape (k, 2)
        Sorted, disjoint ``[start, stop)`` byte ranges that may hold non-zero bytes.
    n_bytes : int
        Payload length.

    Returns
    -------
    SparseGzipPlan
    """
    spans = _merged(np.asarray(data_spans, dtype=np.int64).reshape(-1, 2), n_bytes)
    copied, pieces = [], []
    position = 0
    for start, stop in spans:
        for first in range(start, stop, MAX_STORED_BYTES):
            last = min(first + MAX_STORED_BYTES, stop)
            pieces.append(
                _zeros_then_stored_header(first - position) + _stored_length(last - first)
            )
            copied.append((first, last))
            position = last
    bits = _Bits()
    _fixed_zeros(bits, n_bytes - position)
    bits.put(1, 1)  # final block: stored, empty
    bits.put(0, 2)
    pieces.append(bits.aligned() + _stored_length(0))
    return SparseGzipPlan(int(n_bytes), tuple(copied), tuple(pieces))


def sparse_gzip_bytes(plan: SparseGzipPlan, payload) -> bytes:
    """The gzip file of ``payload`` (any contiguous buffer of ``plan.n_bytes`` bytes).

    Bytes outside ``plan.spans`` are not read: they must be zero (the CRC is of them all).
    """
    view = memoryview(payload).cast("B")
    if view.nbytes != plan.n_bytes:
        raise ValueError(f"a payload of {view.nbytes} bytes; the plan is for {plan.n_bytes}")
    parts = [GZIP_HEADER]
    for piece, (start, stop) in zip(plan.pieces, plan.spans, strict=False):
        parts += (piece, view[start:stop])
    parts += (plan.pieces[-1], struct.pack("<II", crc32(view), plan.n_bytes & 0xFFFFFFFF))
    return b"".join(parts)


def _merged(spans: np.ndarray, n_bytes: int) -> list[tuple[int, int]]:
    """``spans`` within the payload, empty ones dropped, joined across short zero gaps."""
    spans = np.clip(spans, 0, n_bytes)
    spans = spans[spans[:, 1] > spans[:, 0]]
    merged: list[tuple[int, int]] = []
    for start, stop in spans.tolist():
        if merged and start - merged[-1][1] < MIN_CODED_ZEROS:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


@lru_cache(maxsize=4096)
def _zeros_then_stored_header(n_zeros: int) -> bytes:
    """A fixed-Huffman block of ``n_zeros`` zeros (none if 0), then a non-final stored
    block's header, padded to the byte (the same for every gap of that length)."""
    bits = _Bits()
    _fixed_zeros(bits, n_zeros)
    bits.put(0, 3)  # not final; type 00: stored
    return bits.aligned()


def _stored_length(n_bytes: int) -> bytes:
    """LEN and its one's complement NLEN of a stored block."""
    return struct.pack("<HH", n_bytes, n_bytes ^ 0xFFFF)


def _fixed_zeros(bits: _Bits, n_zeros: int) -> None:
    """A non-final fixed-Huffman block of ``n_zeros`` zero bytes (nothing if 0): a literal
    zero, then matches of distance one, the longest first."""
    if n_zeros == 0:
        return
    bits.put(0b010, 3)  # not final; type 01: fixed Huffman codes
    bits.put_code(*_literal_code(0))
    full, rest = divmod(n_zeros - 1, MAX_MATCH)
    bits.put_repeated(_longest_match_bits(), full)
    if rest >= 3:
        _put_match(bits, rest)
    for _ in range(rest if rest < 3 else 0):
        bits.put_code(*_literal_code(0))
    bits.put_code(0, 7)  # end of block (symbol 256)


def _put_match(bits: _Bits, length: int) -> None:
    """A match of ``length`` (3-258) bytes at distance one."""
    index = int(np.searchsorted(LENGTH_BASES, length, side="right")) - 1
    bits.put_code(*_literal_code(257 + index))
    bits.put(length - LENGTH_BASES[index], LENGTH_EXTRA_BITS[index])
    bits.put_code(0, 5)  # distance code 0: distance 1, no extra bits


@lru_cache(maxsize=1)
def _longest_match_bits() -> tuple[int, int]:
    """The bits of a 258-byte match at distance one, as (value, count) for `_Bits.put`."""
    symbol_code, symbol_bits = _literal_code(257 + len(LENGTH_BASES) - 1)
    return _reversed(symbol_code, symbol_bits), symbol_bits + 5


def _literal_code(symbol: int) -> tuple[int, int]:
    """The fixed Huffman code of a literal/length symbol (RFC 1951, 3.2.6): code, bits."""
    if symbol < 144:
        return 0x30 + symbol, 8
    if symbol < 256:
        return 0x190 + symbol - 144, 9
    if symbol < 280:
        return symbol - 256, 7
    return 0xC0 + symbol - 280, 8


def _reversed(code: int, n_bits: int) -> int:
    """``code``'s ``n_bits`` bits in reverse order (Huffman codes go most significant first)."""
    return int(f"{code:0{n_bits}b}"[::-1], 2) if n_bits else 0


class _Bits:
    """Bits packed into bytes least significant first, as deflate packs them."""

    def __init__(self) -> None:
        self.done = bytearray()
        self.value = 0
        self.count = 0

    def put(self, value: int, n_bits: int) -> None:
        """Append the ``n_bits`` low bits of ``value``, least significant first."""
        self.value |= value << self.count
        self.count += n_bits
        while self.count >= 8:
            self.done.append(self.value & 0xFF)
            self.value >>= 8
            self.count -= 8

    def put_code(self, code: int, n_bits: int) -> None:
        """Append a Huffman code (its most significant bit first)."""
        self.put(_reversed(code, n_bits), n_bits)

    def put_repeated(self, bits: tuple[int, int], times: int) -> None:
        """Append ``bits`` (value, count) ``times`` times: eight at a time as whole bytes
        once the stream is at a byte boundary (eight of any length fill whole bytes)."""
        value, n_bits = bits
        while times and self.count:
            self.put(value, n_bits)
            times -= 1
        if times >= 8:
            eight = _Bits()
            for _ in range(8):
                eight.put(value, n_bits)
            self.done += bytes(eight.done) * (times // 8)
            times %= 8
        for _ in range(times):
            self.put(value, n_bits)

    def aligned(self) -> bytes:
        """All bits so far, the last byte padded with zeros."""
        return bytes(self.done) + (bytes([self.value]) if self.count else b"")
