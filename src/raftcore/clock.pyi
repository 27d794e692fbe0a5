# The facade's names are the kernel's: raftcore.clock hands out raftcore._clock's (or its
# twin's, time.perf_counter).
from raftcore._clock import IMPLEMENTATION as IMPLEMENTATION
from raftcore._clock import perf_counter as perf_counter

__all__ = ["perf_counter", "IMPLEMENTATION"]
