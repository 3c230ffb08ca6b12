"""gzip files of payloads that are zero but at known items, laid out once, filled per payload.

A statistical map is zero outside its mask and noisy float32 inside: deflate's matching and
Huffman coding shrink the in-mask bytes by only 5-15 %, at ~9 ns a byte (zlib-ng, level 1,
run-length matching), which was most of the time of writing a map. With the mask known in
advance, a valid deflate stream (RFC 1951) can be laid out instead: the data as *stored*
blocks (copied as they are), each run of zeros between them as a *fixed-Huffman* block of
one literal zero and repeated matches of distance one. Everything but the data then depends
only on the mask: `plan_sparse_gzip` lays the file out once (each stored block placed so
that its items are aligned in the file), and `sparse_gzip_bytes` copies that template, puts
the items in their slots with one numpy scatter and writes the CRC-32. Any gzip reader
decodes the result; it is deterministic and, for a brain map on the 2 mm MNI grid, made in
1.7 instead of 9.6 ms (zlib-ng), in a file 11-18 % larger (the in-mask bytes as they are,
plus ~6 % of block headers): still a third of the image's size.
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
STORED_LENGTH_BYTES = 4  # LEN and NLEN
MAX_ITEM_BYTES = 8
# stored bytes per block: whole items of any size up to 8, and room for the (up to 7) zeros
# a block may take to align them
MAX_CHUNK_BYTES = (MAX_STORED_BYTES - MAX_ITEM_BYTES + 1) // MAX_ITEM_BYTES * MAX_ITEM_BYTES
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
    """The gzip file of payloads made of a constant prefix and items mostly zero.

    Attributes
    ----------
    prefix : bytes
        The payload's first bytes, the same in every payload (a NIfTI header).
    item_dtype : numpy.dtype
        Unsigned integers of the items' size (the bytes are copied, never interpreted).
    n_items : int
        Items after the prefix.
    positions : ndarray of int
        The items that may be non-zero, in order; every other item must be zero.
    slots : ndarray of int
        Where each of those items lies in the file, counted in items from its start
        (every stored item is aligned to its size in the file).
    template : ndarray of uint8
        The whole file, but for those items and the CRC-32 (zeros).
    """

    prefix: bytes
    item_dtype: np.dtype
    n_items: int
    positions: np.ndarray
    slots: np.ndarray
    template: np.ndarray

    @property
    def n_bytes(self) -> int:
        """Payload length."""
        return len(self.prefix) + self.n_items * self.item_dtype.itemsize


def plan_sparse_gzip(
    prefix: bytes, positions: np.ndarray, n_items: int, itemsize: int
) -> SparseGzipPlan:
    """Lay out the gzip file of payloads ``prefix`` + ``n_items`` items of ``itemsize``
    bytes that are zero but at ``positions``.

    Parameters
    ----------
    prefix : bytes
        Constant first bytes, a multiple of ``itemsize`` long.
    positions : ndarray of int
        Indices of the items that may be non-zero, unique, in any order.
    n_items, itemsize : int
        Number and size of the items.

    Returns
    -------
    SparseGzipPlan
    """
    if itemsize not in (1, 2, 4, 8) or len(prefix) % itemsize:
        raise ValueError(f"a prefix of {len(prefix)} bytes and items of {itemsize} bytes")
    flags = np.zeros(n_items + 2, dtype=np.int8)  # items that may be non-zero, one each side
    flags[np.asarray(positions, dtype=np.int64) + 1] = 1
    positions = np.flatnonzero(flags) - 1  # in order: read and written sequentially
    n_bytes = len(prefix) + n_items * itemsize
    runs = len(prefix) + itemsize * np.flatnonzero(np.diff(flags)).reshape(-1, 2)
    spans = _merged(np.vstack([[[0, len(prefix)]], runs]))
    file = bytearray(GZIP_HEADER)
    chunks = []  # (first payload byte, first file byte, bytes) of each stored block
    position = 0
    placeholder = memoryview(bytes(MAX_STORED_BYTES))
    for start, stop in spans:
        for first in range(start, stop, MAX_CHUNK_BYTES):
            last = min(first + MAX_CHUNK_BYTES, stop)
            shift = (len(file) - first) % itemsize
            blocks, taken = _aligned_blocks(first - position, shift, itemsize)
            n_stored = last - first + taken
            file += blocks
            file += _stored_length(n_stored)
            chunks.append((first - taken, len(file), n_stored))
            file += placeholder[:n_stored]
            position = last
    file += _zeros_then_stored_header(n_bytes - position, final=True) + _stored_length(0)
    file += bytes(4) + struct.pack("<I", n_bytes & 0xFFFFFFFF)  # CRC-32 (per payload), ISIZE
    template = np.frombuffer(file, dtype=np.uint8).copy()
    table = np.array(chunks, dtype=np.int64).reshape(-1, 3)
    for payload_start, file_start, length in table[table[:, 0] < len(prefix)].tolist():
        part = prefix[payload_start : payload_start + length]
        template[file_start : file_start + len(part)] = np.frombuffer(part, dtype=np.uint8)
    item_bytes = len(prefix) + itemsize * positions
    chunk = np.searchsorted(table[:, 0], item_bytes, side="right") - 1
    slots = (table[chunk, 1] + item_bytes - table[chunk, 0]) // itemsize
    return SparseGzipPlan(
        bytes(prefix), np.dtype(f"u{itemsize}"), int(n_items), positions, slots, template
    )


def sparse_gzip_bytes(plan: SparseGzipPlan, payload) -> bytes:
    """The gzip file of ``payload`` (a contiguous buffer of ``plan.n_bytes`` bytes that
    starts with ``plan.prefix`` and whose items are zero but at ``plan.positions``)."""
    data = np.frombuffer(payload, dtype=np.uint8)
    if data.size != plan.n_bytes:
        raise ValueError(f"a payload of {data.size} bytes; the plan is for {plan.n_bytes}")
    items = data[len(plan.prefix) :].view(plan.item_dtype)
    file = plan.template.copy()
    whole = file.size // plan.item_dtype.itemsize * plan.item_dtype.itemsize
    # the items are read back from the payload the CRC is of (~0.3 ms a brain map), so the
    # stored bytes and the checksum cannot disagree
    file[:whole].view(plan.item_dtype)[plan.slots] = items[plan.positions]
    file[-8:-4] = np.frombuffer(struct.pack("<I", crc32(data)), dtype=np.uint8)
    return file.tobytes()


def _merged(spans: np.ndarray) -> list[tuple[int, int]]:
    """``spans`` (sorted, disjoint) without empty ones, joined across short zero gaps."""
    merged: list[tuple[int, int]] = []
    for start, stop in spans[spans[:, 1] > spans[:, 0]].tolist():
        if merged and start - merged[-1][1] < MIN_CODED_ZEROS:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


@lru_cache(maxsize=4096)
def _aligned_blocks(n_zeros: int, shift: int, itemsize: int) -> tuple[bytes, int]:
    """The blocks before a stored block that follows ``n_zeros`` zero bytes, up to its
    LEN and NLEN, such that the stored bytes move from payload to file by a multiple of
    ``itemsize`` (``shift``: by how much, modulo ``itemsize``, were the blocks empty).

    The stored block starts up to ``itemsize - 1`` of those zeros early or, should that
    not do, after up to ``itemsize`` empty stored blocks; returns the blocks and how many
    zeros the stored block took.
    """
    for n_empty in range(itemsize + 1):
        for taken in range(min(n_zeros, itemsize - 1) + 1):
            blocks = _zeros_then_stored_header(n_zeros - taken, n_empty=n_empty)
            if (shift + len(blocks) + STORED_LENGTH_BYTES + taken) % itemsize == 0:
                return blocks, taken
    raise AssertionError("no alignment")  # pragma: no cover - empty blocks give any shift


@lru_cache(maxsize=4096)
def _zeros_then_stored_header(n_zeros: int, n_empty: int = 0, final: bool = False) -> bytes:
    """A fixed-Huffman block of ``n_zeros`` zeros (none if 0), ``n_empty`` empty stored
    blocks, then a stored block's header, padded to the byte (the same for every gap of
    that length)."""
    bits = _Bits()
    _fixed_zeros(bits, n_zeros)
    for _ in range(n_empty):
        bits.put(0, 3)  # not final; type 00: stored
        bits.pad()
        bits.done += _stored_length(0)
    bits.put(int(final), 1)
    bits.put(0, 2)  # type 00: stored
    bits.pad()
    return bytes(bits.done)


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

    def pad(self) -> None:
        """Complete the last byte with zero bits."""
        if self.count:
            self.done.append(self.value)
            self.value, self.count = 0, 0
