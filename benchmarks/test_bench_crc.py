"""CRC32C: raftcore against the `crc32c` package and zlib.crc32, measured in the same run.

Goals (issue 2): on 1 MiB at least the `crc32c` package's throughput; on 64 B under 150 ns/call.
    pytest benchmarks/test_bench_crc.py --benchmark-enable --benchmark-group-by=param
"""

from __future__ import annotations

import os
import zlib

import crc32c as reference
import pytest

import raftcore

SIZES = {"64B": 64, "4KiB": 4096, "1MiB": 1 << 20}
IMPLEMENTATIONS = {
    "raftcore": raftcore.crc32c,
    "crc32c-package": reference.crc32c,
    "zlib.crc32 (other polynomial)": zlib.crc32,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_crc32c(benchmark, size, name):
    data = os.urandom(SIZES[size])
    function = IMPLEMENTATIONS[name]
    benchmark.group = f"crc32c {size}"
    benchmark.extra_info["bytes"] = len(data)
    result = benchmark(function, data)
    if name != "zlib.crc32 (other polynomial)":
        assert result == reference.crc32c(data)
