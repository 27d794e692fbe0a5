# The facade's types are the kernel's: raftcore.index hands out raftcore._index's IndexTable
# (or its twin's, which has the same signatures).
from raftcore._index import IMPLEMENTATION as IMPLEMENTATION
from raftcore._index import IndexTable as IndexTable

__all__ = ["IndexTable", "IMPLEMENTATION"]
