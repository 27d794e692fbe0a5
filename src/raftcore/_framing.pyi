from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

IMPLEMENTATION: Literal["compiled", "python"]
RECORD_HEADER_BYTES: int
RECORD_VERSION: int
RECORD_PAYLOAD_BYTES_MAX: int
KIND_COMMAND: int
KIND_CONFIGURATION: int
KIND_NOOP: int
FRAME_HEADER_BYTES: int
FRAME_MAGIC: int
FRAME_VERSION: int
FRAME_BYTES_MAX: int
MESSAGE_HEAD_BYTES: int

class EntryBatch:
    buffer: Buffer
    base: int
    nbytes: int
    first_index: int
    terms: npt.NDArray[np.uint64]
    kinds: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint64]
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[int, int, int, memoryview]]: ...
    @property
    def last_index(self) -> int: ...
    @property
    def last_term(self) -> int: ...
    @property
    def data(self) -> memoryview: ...
    @property
    def config_positions(self) -> npt.NDArray[np.int64]: ...
    def tobytes(self) -> bytes: ...
    def term_at(self, index: int) -> int: ...
    def kind_at(self, index: int) -> int: ...
    def count_kind(self, kind: int) -> int: ...
    def all_of_term(self, lo: int, hi: int, term: int) -> bool: ...
    def payload(self, i: int) -> memoryview: ...
    def payload_at(self, index: int) -> memoryview: ...
    def payloads(self) -> list[memoryview]: ...
    def slice(self, lo: int, hi: int) -> EntryBatch: ...
    def byte_size(self, lo: int, hi: int) -> int: ...

def empty_batch(next_index: int = 1) -> EntryBatch: ...
def encode_entries(
    first_index: int,
    terms: int | Sequence[int] | npt.NDArray[np.uint64],
    payloads: Sequence[Buffer],
    kinds: int | Sequence[int] | npt.NDArray[np.uint8] = 0,
    *,
    payload_bytes_max: int = ...,
) -> EntryBatch: ...
def decode_entries(
    data: Buffer, expected_first_index: int = 0, *, payload_bytes_max: int = ..., prev_term: int = 0
) -> EntryBatch: ...
def decode_entries_at(
    data: Buffer, start: int, length: int, expected_first_index: int = 0
) -> EntryBatch: ...
def scan_entries(
    data: Buffer, expected_first_index: int = 0, *, payload_bytes_max: int = ..., prev_term: int = 0
) -> tuple[EntryBatch, int, Exception | None]: ...
def concat_batches(batches: Sequence[EntryBatch]) -> EntryBatch: ...
def frame_header(message_type: int, body: Buffer, tail: Buffer | None = None) -> bytes: ...
def encode_frame(message_type: int, body: Buffer) -> bytes: ...
def pack_message_head(
    version: int,
    code: int,
    flags: int,
    context_length: int,
    entries_length: int,
    chunk_length: int,
    src: int,
    dst: int,
    term: int,
    log_term: int,
    index: int,
    commit: int,
    reject_hint: int,
    hint_term: int,
    snapshot_offset: int,
) -> bytes: ...

class MessageHead:
    version: int
    code: int
    flags: int
    reserved: int
    context_length: int
    entries_length: int
    chunk_length: int
    src: int
    dst: int
    term: int
    log_term: int
    index: int
    commit: int
    reject_hint: int
    hint_term: int
    snapshot_offset: int

def read_message_head(data: Buffer) -> MessageHead: ...

class FrameDecoder:
    frame_bytes_max: int
    def __init__(self, frame_bytes_max: int = ...) -> None: ...
    @property
    def buffered(self) -> int: ...
    @property
    def stream_offset(self) -> int: ...
    def feed(self, data: Buffer) -> list[tuple[int, bytes]]: ...
