# The facade's types are the kernel's: raftcore.crc hands out raftcore._crc's functions (or
# their twins', which have the same signatures).
from raftcore._crc import IMPLEMENTATION as IMPLEMENTATION
from raftcore._crc import PROFILE_GUIDED as PROFILE_GUIDED
from raftcore._crc import crc32c as crc32c
from raftcore._crc import crc32c_implementation as crc32c_implementation
from raftcore._crc import crc32c_portable as crc32c_portable

__all__ = ["crc32c", "crc32c_portable", "crc32c_implementation", "IMPLEMENTATION",
           "PROFILE_GUIDED"]
