"""Pure-Python twin of ``raftcore._clock``: ``time.perf_counter`` itself."""

from time import perf_counter

__all__ = ["IMPLEMENTATION", "perf_counter"]

IMPLEMENTATION = "python"
