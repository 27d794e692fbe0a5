"""Pure-Python twin of ``raftcore._framing``: same formats, API and errors (the test oracle).

Written for clarity with ``struct``; the compiled kernel is the one that runs in production.
"""

from __future__ import annotations

import operator
import struct

import numpy as np

from raftcore.crc import crc32c
from raftcore.errors import (
    CorruptFrameError,
    CorruptRecordError,
    OversizedFrameError,
    OversizedRecordError,
    TruncatedRecordError,
)

IMPLEMENTATION = "python"

RECORD_HEADER_BYTES = 32
RECORD_VERSION = 1
KIND_COMMAND = 0
KIND_CONFIGURATION = 1
KIND_NOOP = 2
RECORD_PAYLOAD_BYTES_MAX = 64 * 1024 * 1024
FRAME_HEADER_BYTES = 16
FRAME_MAGIC = 0x5246
FRAME_VERSION = 1
FRAME_BYTES_MAX = 64 * 1024 * 1024

# header_crc, payload_crc, length, kind, version, flags, term, index
_HEADER = struct.Struct("<IIIBBHQQ")
_FRAME = struct.Struct("<IIIHBB")  # header_crc, body_crc, length, magic, version, type
_KIND_MAX = 2


class EntryBatch:
    """See ``raftcore._framing.EntryBatch``."""

    __slots__ = ("buffer", "base", "nbytes", "first_index", "terms", "kinds", "offsets", "_view")

    def __init__(self, buffer, base, nbytes, first_index, terms, kinds, offsets):
        if len(kinds) != len(terms) or len(offsets) != len(terms) + 1:
            raise ValueError(f"a batch of {len(terms)} terms needs {len(terms)} kinds and "
                             f"{len(terms) + 1} offsets, got {len(kinds)} and {len(offsets)}")
        self.buffer = buffer
        self.base = base
        self.nbytes = nbytes
        self.first_index = first_index
        self.terms = terms
        self.kinds = kinds
        self.offsets = offsets
        self._view = None

    def __len__(self):
        return len(self.terms)

    def __repr__(self):
        return (
            f"EntryBatch(first_index={self.first_index}, last_index={self.last_index}, "
            f"entries={len(self)}, nbytes={self.nbytes})"
        )

    @property
    def last_index(self):
        return self.first_index + len(self) - 1

    @property
    def last_term(self):
        return int(self.terms[-1]) if len(self) else 0

    def _memoryview(self):
        if self._view is None:
            self._view = memoryview(self.buffer).cast("B")
        return self._view

    @property
    def data(self):
        view = self._memoryview()
        if self.base == 0 and self.nbytes == len(view):
            return view
        return view[self.base : self.base + self.nbytes]

    def tobytes(self):
        if type(self.buffer) is bytes and self.base == 0 and self.nbytes == len(self.buffer):
            return self.buffer
        return bytes(self.data)

    def _position(self, index):
        if not self.first_index <= index < self.first_index + len(self):
            raise IndexError(
                f"log index {index} is not in this batch "
                f"[{self.first_index}, {self.first_index + len(self) - 1}]"
            )
        return index - self.first_index

    def term_at(self, index):
        return int(self.terms[self._position(index)])

    def kind_at(self, index):
        return int(self.kinds[self._position(index)])

    def count_kind(self, kind):
        return int(np.count_nonzero(self.kinds == kind))

    def all_of_term(self, lo, hi, term):
        first = self.first_index
        a, b = max(lo, first) - first, min(hi, first + len(self)) - first
        return b <= a or bool((self.terms[a:b] == term).all())

    def payload(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"entry position {i} out of range for a batch of {len(self)}")
        start = self.base + int(self.offsets[i]) + RECORD_HEADER_BYTES
        return self._memoryview()[start : self.base + int(self.offsets[i + 1])]

    def payload_at(self, index):
        return self.payload(self._position(index))

    def payloads(self):
        return [self.payload(i) for i in range(len(self))]

    @property
    def config_positions(self):
        return np.flatnonzero(self.kinds == KIND_CONFIGURATION)

    def slice(self, lo, hi):
        first, n = self.first_index, len(self)
        lo, hi = max(lo, first), min(hi, first + n)
        if hi <= lo:
            return empty_batch(lo)
        a, b = lo - first, hi - first
        if a == 0 and b == n:
            return self
        start = self.offsets[a]
        return EntryBatch(
            self.buffer,
            self.base + int(start),
            int(self.offsets[b] - start),
            lo,
            self.terms[a:b],
            self.kinds[a:b],
            self.offsets[a : b + 1] - start,
        )

    def byte_size(self, lo, hi):
        first = self.first_index
        a, b = max(lo, first) - first, min(hi, first + len(self)) - first
        return int(self.offsets[b] - self.offsets[a]) if b > a else 0

    def __iter__(self):
        for i in range(len(self)):
            yield self.first_index + i, int(self.terms[i]), int(self.kinds[i]), self.payload(i)

    def __reduce__(self):
        return (decode_entries, (self.tobytes(),))


def empty_batch(next_index=1):
    if not 0 <= next_index < 1 << 64:  # as the compiled kernel's uint64_t argument
        raise OverflowError(f"next index {next_index} does not fit in 64 bits")
    return EntryBatch(
        b"",
        0,
        0,
        next_index,
        np.zeros(0, dtype=np.uint64),
        np.zeros(0, dtype=np.uint8),
        np.zeros(1, dtype=np.uint64),
    )


def _check_u64(name, value):
    if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        raise OverflowError(f"{name} must be an unsigned 64-bit integer")


def _scan(data, expected_first_index, payload_bytes_max, prev_term):
    view = memoryview(data).cast("B")
    size = len(view)
    pos = 0
    terms, kinds, offsets = [], [], []
    first = expected_first_index
    last_term = prev_term
    error = None
    while pos < size:
        if size - pos < RECORD_HEADER_BYTES:
            error = TruncatedRecordError("buffer ends inside a record header", pos)
            break
        header = view[pos : pos + RECORD_HEADER_BYTES]
        hcrc, pcrc, length, kind, version, flags, term, index = _HEADER.unpack(header)
        if crc32c(header[4:]) != hcrc:
            error = CorruptRecordError("record header checksum mismatch", pos)
        elif version != RECORD_VERSION:
            error = CorruptRecordError("unknown record format version", pos)
        elif flags != 0:
            error = CorruptRecordError("reserved record flags are set", pos)
        elif kind > _KIND_MAX:
            error = CorruptRecordError("unknown record kind", pos)
        elif length > payload_bytes_max:
            error = OversizedRecordError("record payload length exceeds the maximum", pos)
        elif size - pos - RECORD_HEADER_BYTES < length:
            error = TruncatedRecordError("buffer ends inside a record payload", pos)
        elif crc32c(view[pos + RECORD_HEADER_BYTES : pos + RECORD_HEADER_BYTES + length]) != pcrc:
            error = CorruptRecordError("record payload checksum mismatch", pos)
        elif (not terms and expected_first_index == 0 and index == 0) or (
            (terms or expected_first_index) and index != first + len(terms)
        ):
            error = CorruptRecordError("record index out of sequence", pos)
        elif term == 0 or term < last_term:
            error = CorruptRecordError("record term is zero or lower than the previous one", pos)
        if error is not None:
            break
        if not terms and expected_first_index == 0:
            first = index
        last_term = term
        terms.append(term)
        kinds.append(kind)
        offsets.append(pos)
        pos += RECORD_HEADER_BYTES + length
    offsets.append(pos)
    if not terms and not expected_first_index:
        first = 1
    batch = EntryBatch(
        data,
        0,
        pos,
        first,
        np.array(terms, dtype=np.uint64),
        np.array(kinds, dtype=np.uint8),
        np.array(offsets, dtype=np.uint64),
    )
    return batch, pos, error


def decode_entries(
    data, expected_first_index=0, *, payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX, prev_term=0
):
    _check_u64("expected_first_index", expected_first_index)
    batch, _end, error = _scan(data, expected_first_index, payload_bytes_max, prev_term)
    if error is not None:
        raise error
    return batch


def decode_entries_at(data, start, length, expected_first_index=0):
    view = memoryview(data).cast("B")
    if start < 0 or length < 0 or start > len(view) - length:
        raise ValueError(f"{length} bytes at {start} of a {len(view)}-byte buffer")
    return decode_entries(view[start : start + length], expected_first_index)


def scan_entries(
    data, expected_first_index=0, *, payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX, prev_term=0
):
    _check_u64("expected_first_index", expected_first_index)
    return _scan(data, expected_first_index, payload_bytes_max, prev_term)


def encode_entries(
    first_index, terms, payloads, kinds=KIND_COMMAND, *, payload_bytes_max=RECORD_PAYLOAD_BYTES_MAX
):
    _check_u64("first_index", first_index)
    payloads = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
    n = len(payloads)
    if first_index == 0:
        raise ValueError("first_index must be >= 1 (Raft log indexes start at 1)")
    if isinstance(terms, int):
        if terms <= 0:
            raise ValueError("terms must be >= 1")
        terms = [terms] * n
    terms = [int(t) for t in terms]
    if len(terms) != n:
        raise ValueError(f"terms has {len(terms)} values for {n} payloads")
    if isinstance(kinds, int):
        if not 0 <= kinds <= _KIND_MAX:
            raise ValueError(f"unknown entry kind {kinds}")
        kinds = [kinds] * n
    kinds = [int(k) for k in kinds]
    if len(kinds) != n:
        raise ValueError(f"kinds has {len(kinds)} values for {n} payloads")
    if any(not 0 <= k <= _KIND_MAX for k in kinds):
        raise ValueError("unknown entry kind in kinds")
    prev = 0
    for i, t in enumerate(terms):
        if t <= 0 or t < prev:
            raise ValueError(f"term of entry {i} is zero or lower than the previous one")
        prev = t
    parts, offsets, pos = [], [], 0
    for i, payload in enumerate(payloads):
        body = bytes(memoryview(payload).cast("B"))
        if len(body) > payload_bytes_max or len(body) > 0xFFFFFFFF:
            raise ValueError(
                f"payload {i} has {len(body)} bytes, over the maximum of {payload_bytes_max}"
            )
        rest = _HEADER.pack(0, crc32c(body), len(body), kinds[i], RECORD_VERSION, 0, terms[i],
                            first_index + i)[4:]
        parts += [struct.pack("<I", crc32c(rest)), rest, body]
        offsets.append(pos)
        pos += RECORD_HEADER_BYTES + len(body)
    offsets.append(pos)
    data = b"".join(parts)
    return EntryBatch(
        data,
        0,
        len(data),
        first_index,
        np.array(terms, dtype=np.uint64),
        np.array(kinds, dtype=np.uint8),
        np.array(offsets, dtype=np.uint64),
    )


def concat_batches(batches):
    batches = [b for b in batches if len(b)]
    if not batches:
        return empty_batch()
    if len(batches) == 1:
        return batches[0]
    for left, right in zip(batches, batches[1:]):
        if right.first_index != left.last_index + 1:
            raise ValueError(
                f"batches are not contiguous: {left.last_index} then {right.first_index}"
            )
        if right.terms[0] < left.terms[-1]:
            raise ValueError("terms decrease between batches")
    data = b"".join(b.data for b in batches)
    offsets, shift = [], 0
    for b in batches:
        offsets += [int(o) + shift for o in b.offsets[:-1]]
        shift += b.nbytes
    offsets.append(shift)
    return EntryBatch(
        data,
        0,
        len(data),
        batches[0].first_index,
        np.concatenate([b.terms for b in batches]),
        np.concatenate([b.kinds for b in batches]),
        np.array(offsets, dtype=np.uint64),
    )


def frame_header(message_type, body, tail=None):
    if not 0 <= message_type <= 255:
        raise ValueError(f"message type {message_type} does not fit in a byte")
    body = memoryview(body).cast("B")
    crc, size = crc32c(body), len(body)
    if tail is not None:
        tail = memoryview(tail).cast("B")
        size += len(tail)
        if size <= 0xFFFFFFFF:
            crc = crc32c(tail, crc)
    if size > 0xFFFFFFFF:
        raise ValueError("frame body over 4 GiB")
    rest = _FRAME.pack(0, crc, size, FRAME_MAGIC, FRAME_VERSION, message_type)[4:]
    return struct.pack("<I", crc32c(rest)) + rest


# ---- the fixed head of a Raft message body -------------------------------------------------
MESSAGE_HEAD_BYTES = 88
# version, code, flags, reserved; context, entries and chunk lengths; src, dst, term,
# log_term, index, commit, reject_hint, hint_term, snapshot_offset
_MESSAGE_HEAD = struct.Struct("<BBBBIII9Q")
_HEAD_FIELDS = ("version", "code", "flags", "reserved", "context_length", "entries_length",
                "chunk_length", "src", "dst", "term", "log_term", "index", "commit",
                "reject_hint", "hint_term", "snapshot_offset")
_HEAD_BITS = (8, 8, 8, 8, 32, 32, 32) + (64,) * 9


def pack_message_head(version, code, flags, context_length, entries_length, chunk_length,
                      src, dst, term, log_term, index, commit, reject_hint, hint_term,
                      snapshot_offset):
    values = (version, code, flags, 0, context_length, entries_length, chunk_length, src,
              dst, term, log_term, index, commit, reject_hint, hint_term, snapshot_offset)
    for name, value, bits in zip(_HEAD_FIELDS, values, _HEAD_BITS):
        value = operator.index(value)  # TypeError for what is not an integer
        if value < 0 or value >> bits:
            raise OverflowError(f"{name} {value} does not fit in {bits} bits")
    return _MESSAGE_HEAD.pack(*values)


class MessageHead:
    """The fields of a message body's head (see the kernel's ``MessageHead``)."""

    __slots__ = _HEAD_FIELDS

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in _HEAD_FIELDS)
        return f"MessageHead({fields})"


def read_message_head(data):
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(view) < MESSAGE_HEAD_BYTES:
        raise ValueError(f"a message head is {MESSAGE_HEAD_BYTES} bytes, not {len(view)}")
    head = MessageHead()
    for name, value in zip(_HEAD_FIELDS, _MESSAGE_HEAD.unpack_from(view)):
        setattr(head, name, value)
    return head


def encode_frame(message_type, body):
    return frame_header(message_type, body) + bytes(body)


class FrameDecoder:
    """See ``raftcore._framing.FrameDecoder``."""

    def __init__(self, frame_bytes_max=FRAME_BYTES_MAX):
        if not 0 < frame_bytes_max <= 0xFFFFFFFF:
            raise ValueError("frame_bytes_max must be in [1, 2**32 - 1]")
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._consumed = 0
        self._error = None

    @property
    def buffered(self):
        return len(self._buffer)

    @property
    def stream_offset(self):
        return self._consumed

    def feed(self, data):
        if self._error is not None:
            raise self._error
        self._buffer += data
        buf, pos, frames = self._buffer, 0, []
        try:
            while len(buf) - pos >= FRAME_HEADER_BYTES:
                at = self._consumed + pos
                hcrc, bcrc, length, magic, version, mtype = _FRAME.unpack_from(buf, pos)
                if crc32c(memoryview(buf)[pos + 4 : pos + FRAME_HEADER_BYTES]) != hcrc:
                    raise CorruptFrameError("frame header checksum mismatch", at)
                if magic != FRAME_MAGIC or version != FRAME_VERSION:
                    raise CorruptFrameError("bad frame magic or version", at)
                if length > self.frame_bytes_max:
                    raise OversizedFrameError(
                        f"frame body of {length} bytes exceeds frame_bytes_max "
                        f"{self.frame_bytes_max}",
                        at,
                    )
                if len(buf) - pos - FRAME_HEADER_BYTES < length:
                    break
                body = bytes(buf[pos + FRAME_HEADER_BYTES : pos + FRAME_HEADER_BYTES + length])
                if crc32c(body) != bcrc:
                    raise CorruptFrameError("frame body checksum mismatch", at)
                frames.append((mtype, body))
                pos += FRAME_HEADER_BYTES + length
        except Exception as exc:
            self._error = exc
            if not frames:
                raise
        finally:
            if pos:
                del buf[:pos]
                self._consumed += pos
        return frames
