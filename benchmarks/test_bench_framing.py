"""Framing: encode and decode+validate batches of 1,000 16-byte entries.

Compared in the same run with a straightforward pure-Python implementation of the same
record layout using `struct` and `zlib.crc32` (zlib's CRC is faster from Python than any
pure-Python CRC32C, which makes the baseline generous). Goals (issue 2): at least 3 million
entries/s each way, and at least 10x the baseline.
    pytest benchmarks/test_bench_framing.py --benchmark-enable --benchmark-group-by=group
"""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from raftcore import framing

ENTRIES = 1000
PAYLOADS = [os.urandom(16) for _ in range(ENTRIES)]
_REST = struct.Struct("<IIBBHQQ")
_HEADER = struct.Struct("<IIIBBHQQ")


def baseline_encode(first_index, term, payloads):
    parts = []
    for i, payload in enumerate(payloads):
        rest = _REST.pack(zlib.crc32(payload), len(payload), 0, 1, 0, term, first_index + i)
        parts += [struct.pack("<I", zlib.crc32(rest)), rest, payload]
    return b"".join(parts)


def baseline_decode(data):
    view = memoryview(data)
    pos, terms, offsets, size = 0, [], [], len(data)
    while pos < size:
        hcrc, pcrc, length, kind, version, flags, term, index = _HEADER.unpack_from(data, pos)
        if zlib.crc32(view[pos + 4 : pos + 32]) != hcrc:
            raise ValueError("header checksum")
        payload = view[pos + 32 : pos + 32 + length]
        if zlib.crc32(payload) != pcrc:
            raise ValueError("payload checksum")
        terms.append(term)
        offsets.append(pos)
        pos += 32 + length
    return terms, offsets


ENCODED = framing.encode_entries(1, 1, PAYLOADS).tobytes()
BASELINE_ENCODED = baseline_encode(1, 1, PAYLOADS)


@pytest.mark.parametrize("name", ["raftcore", "struct+zlib baseline"])
def test_encode_1000x16B(benchmark, name):
    benchmark.group = "framing encode 1000 x 16 B"
    benchmark.extra_info["entries"] = ENTRIES
    if name == "raftcore":
        batch = benchmark(framing.encode_entries, 1, 1, PAYLOADS)
        assert len(batch) == ENTRIES
    else:
        assert len(benchmark(baseline_encode, 1, 1, PAYLOADS)) == len(ENCODED)


@pytest.mark.parametrize("name", ["raftcore", "struct+zlib baseline"])
def test_decode_validate_1000x16B(benchmark, name):
    benchmark.group = "framing decode+validate 1000 x 16 B"
    benchmark.extra_info["entries"] = ENTRIES
    if name == "raftcore":
        batch = benchmark(framing.decode_entries, ENCODED)
        assert len(batch) == ENTRIES
    else:
        terms, _offsets = benchmark(baseline_decode, BASELINE_ENCODED)
        assert len(terms) == ENTRIES


def test_frame_decoder_64KiB_stream(benchmark):
    body = os.urandom(4096)
    stream = b"".join(framing.encode_frame(1, body) for _ in range(16))
    benchmark.group = "frames"

    def run():
        return framing.FrameDecoder().feed(stream)

    assert len(benchmark(run)) == 16
