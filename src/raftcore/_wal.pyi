import os
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from raftcore._framing import EntryBatch

SEGMENT_HEADER_BYTES: Final[int]
SEGMENT_MAGIC: Final[bytes]
SEGMENT_VERSION: Final[int]
SYNC_POLICIES: Final[tuple[str, ...]]
RELEASED_SUFFIX: Final[str]

def encode_segment_header(cluster_id: int, first_index: int) -> bytes: ...
def decode_segment_header(data: bytes, path: str) -> tuple[int, int]: ...

class RecoveryReport:
    """What opening the log found. ``torn_bytes`` were cut from the newest segment."""

    segments: int
    records: int
    bytes: int
    first_index: int
    last_index: int
    torn_bytes: int
    torn_segment: str | None
    repaired: list[str]
    seconds: float

class _SegmentDeleter(Protocol):
    """Removes released segments later, in the order given (``WriteAheadLog.deleter``)."""

    def delete(self, path: str) -> None: ...
    def wait(self) -> None: ...

class WriteAheadLog:
    """Segmented, checksummed log of entry batches (see ``raftcore._wal``)."""

    directory: Final[str]
    cluster_id: Final[int]
    segment_bytes_max: Final[int]
    sync_policy: Final[str]
    sync_interval_ms: Final[float]
    zero_fill: Final[bool]
    payload_bytes_max: Final[int]
    recovery: Final[RecoveryReport]
    deleter: _SegmentDeleter | None

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        cluster_id: int = 0,
        segment_bytes_max: int = ...,
        sync: str = "always",
        sync_interval_ms: float = 10.0,
        zero_fill: bool = False,
        payload_bytes_max: int = ...,
        repair: bool = False,
    ) -> None: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def durable_index(self) -> int: ...
    @property
    def segments(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def term_at(self, index: int) -> int: ...
    def last_term(self) -> int: ...
    def terms(self, lo: int, hi: int) -> npt.NDArray[np.uint64]: ...
    def append(self, batch: EntryBatch) -> int: ...
    def sync(self) -> int: ...
    def truncate_suffix(self, index: int) -> None: ...
    def release_prefix(self, index: int, prev_term: int | None = None) -> None: ...
    def reset(self, next_index: int, prev_term: int = 0) -> None: ...
    def read(self, lo: int, hi: int, max_bytes: int | None = None) -> EntryBatch: ...
    def close(self) -> None: ...
    def __enter__(self) -> WriteAheadLog: ...
    def __exit__(self, *exc: object) -> None: ...
