"""CRC32C kernel: RFC 3720 known answers, agreement with the `crc32c` package, chaining."""

from __future__ import annotations

import os
import platform

import crc32c as reference
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import raftcore
import raftcore.crc
from raftcore._select import USE_TWINS

from ._impls import implementation_id, implementations


@pytest.fixture(params=implementations("crc"), ids=implementation_id)
def crc(request):
    return request.param


# RFC 3720, appendix B.4 "CRC Examples" (the CRC values as transmitted, read little-endian).
RFC3720_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000"
            "14000000000004000000001400000018"
            "28000000000000000200000000000000"
        ),
        0xD9963A56,
    ),
    (b"123456789", 0xE3069283),  # the standard "check" value of CRC-32C
    (b"", 0),
]


@pytest.mark.parametrize("data,expected", RFC3720_VECTORS)
def test_known_answers(crc, data, expected):
    assert crc.crc32c(data) == expected
    assert crc.crc32c_portable(data) == expected


# Sizes around the kernel's block boundaries (256 and 8192 bytes, three streams each), and
# every size up to 40: the tails of 4, 2 and 1 bytes in each combination, after 0-4 words.
BOUNDARY_SIZES = [*range(41), 255, 256, 767, 768, 769, 8191, 8192, 24575, 24576, 24577,
                  3 * 8192 + 3 * 256 + 7, 1 << 20]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_matches_reference_at_block_boundaries(size):
    data = os.urandom(size + 7)
    for shift in range(8):  # every alignment of the start pointer
        view = memoryview(data)[shift : shift + size]
        assert raftcore.crc32c(view) == reference.crc32c(bytes(view))


@given(st.binary(max_size=40_000), st.integers(0, 0xFFFFFFFF))
def test_matches_reference_package(data, seed):
    assert raftcore.crc32c(data) == reference.crc32c(data)
    assert raftcore.crc32c(data, seed) == reference.crc32c(data, seed)


@given(st.binary(max_size=3000))
def test_twin_matches_compiled(data):
    results = {m.IMPLEMENTATION: m.crc32c(data) for m in implementations("crc")}
    assert len(set(results.values())) == 1, results
    assert raftcore.crc.crc32c_portable(data) == reference.crc32c(data)


@given(st.binary(max_size=5000), st.integers(0, 5000))
def test_chaining(data, cut):
    cut = min(cut, len(data))
    assert raftcore.crc32c(data[cut:], raftcore.crc32c(data[:cut])) == raftcore.crc32c(data)


def test_accepts_any_contiguous_buffer(crc):
    data = os.urandom(1000)
    expected = reference.crc32c(data)
    assert crc.crc32c(bytearray(data)) == expected
    assert crc.crc32c(memoryview(data)) == expected
    assert crc.crc32c(np.frombuffer(data, dtype=np.uint8)) == expected


def test_rejects_bad_arguments(crc):
    with pytest.raises(TypeError):
        crc.crc32c("text is not bytes")
    with pytest.raises(OverflowError):
        crc.crc32c(b"x", -1)
    with pytest.raises(OverflowError):
        crc.crc32c(b"x", 1 << 32)


def test_implementation_is_hardware_where_the_cpu_has_it():
    name = raftcore.crc32c_implementation()
    if USE_TWINS:
        assert name == "python"
        return
    machine = platform.machine().lower()
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    if machine in ("x86_64", "amd64") and "sse4_2" in flags:
        assert name == "sse4.2"
    elif machine in ("aarch64", "arm64") and (" crc32" in flags or not flags):
        assert name == "armv8"
    else:
        assert name in ("table", "sse4.2", "armv8")


def test_compiled_kernel_is_loaded():
    """The package must not run on the twin unless PYRAFT_NO_EXTENSIONS=1 asked for it."""
    expected = "python" if USE_TWINS else "compiled"
    assert raftcore.crc.IMPLEMENTATION == expected
