"""Pure-Python twin of ``raftcore._crc``: same API and results, used as the test oracle."""

from __future__ import annotations

__all__ = ["crc32c", "crc32c_portable", "crc32c_implementation", "IMPLEMENTATION"]

IMPLEMENTATION = "python"
PROFILE_GUIDED = False  # a twin is never compiled
_POLY = 0x82F63B78


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data, value: int = 0) -> int:
    """Return the CRC32C of ``data`` (any contiguous buffer), continuing from ``value``."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise OverflowError("value must be an unsigned 32-bit integer")
    table = _TABLE
    crc = value ^ 0xFFFFFFFF
    for byte in memoryview(data).cast("B"):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c_portable = crc32c


def crc32c_implementation() -> str:
    return "python"
