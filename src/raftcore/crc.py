"""CRC32C (Castagnoli): ``crc32c(data, value=0)`` and ``crc32c_implementation()``.

Compiled kernel ``raftcore._crc`` (SSE4.2 / ARMv8 / table, chosen at import), or its
pure-Python twin when ``PYRAFT_NO_EXTENSIONS=1``.
"""

from raftcore._select import load

_impl = load("crc")

crc32c = _impl.crc32c
crc32c_portable = _impl.crc32c_portable
crc32c_implementation = _impl.crc32c_implementation
IMPLEMENTATION: str = _impl.IMPLEMENTATION
#: the extensions were compiled with a training run's profile (setup.py's RAFTCORE_PGO)
PROFILE_GUIDED: bool = _impl.PROFILE_GUIDED

__all__ = ["crc32c", "crc32c_portable", "crc32c_implementation", "IMPLEMENTATION",
           "PROFILE_GUIDED"]
