# The facade's types are the kernel's: raftcore.phi hands out raftcore._phi's names (or their
# twins', which have the same signatures).
from raftcore._phi import IMPLEMENTATION as IMPLEMENTATION
from raftcore._phi import PHI_MAX as PHI_MAX
from raftcore._phi import TIME_MS_MAX as TIME_MS_MAX
from raftcore._phi import WINDOW_SIZE_MAX as WINDOW_SIZE_MAX
from raftcore._phi import PhiAccrualDetector as PhiAccrualDetector

__all__ = ["PhiAccrualDetector", "WINDOW_SIZE_MAX", "TIME_MS_MAX", "PHI_MAX", "IMPLEMENTATION"]
