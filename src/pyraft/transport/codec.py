"""The wire codec: ``pyraft.core.Message`` and the connection handshake as transport frames.

Every unit on a connection is one ``raftcore.framing`` frame (docs/format.md, "Transport
frame"): a 16-byte header with two CRC32C checksums, then the body. The frame ``type`` byte
says what the body is:

==================  ====  =========================================================
``FRAME_RAFT``      1     one Raft message (layout below)
``FRAME_HELLO``     2     first frame of the connecting side: who it is, which cluster
``FRAME_ACCEPT``    3     the accepting side's answer when it agrees (same layout)
``FRAME_REFUSE``    4     the accepting side's answer when it does not: a reason
==================  ====  =========================================================

Raft message body, version 1 (all integers little-endian)::

    offset size field
    0      1    body version (1)
    1      1    message type (MessageType; local-only types are refused)
    2      1    flags: 1 reject, 2 transfer, 4 snapshot_done, 8 fresh (other bits must be 0)
    3      1    reserved, 0 (was the entry kind of PROPOSE, which never travelled)
    4      4    context length C
    8      4    entry bytes length E  (APPEND only, else 0)
    12     4    snapshot chunk length D  (SNAPSHOT only, else 0)
    16     72   src, dst, term, log_term, index, commit, reject_hint, hint_term,
                snapshot_offset: nine unsigned 64-bit integers
    88     ...  SNAPSHOT only: meta index u64, meta term u64, voter count u32, learner
                count u32, then that many member ids (u64 each), voters first, then a u32
                length and that many bytes of msgpack: [[id, "host:port", {metadata}], ...]
    ...    C    context bytes
    ...    E    log-entry records, exactly as the WAL stores them (docs/format.md)
    ...    D    the snapshot chunk

The first 88 bytes (the fixed head) are packed and read by the framing kernel
(``raftcore.framing.pack_message_head`` / ``read_message_head``, docs/format.md); this module
checks every value.

The entry records and the snapshot chunk are never copied into a larger buffer when sending:
:func:`encode_message` returns the frame as a list of buffers for ``writelines`` (the frame
header, the body's fixed part, then the records or the chunk). The frame's body checksum
covers all the parts (``frame_header``'s ``tail``: CRC32C chained across them), so the result
is byte for byte what ``raftcore.framing.encode_frame`` would produce for the joined body.

Handshake body (HELLO and ACCEPT), version 1::

    0   4   protocol version (PROTOCOL_VERSION)
    4   8   cluster id
    12  8   member id of the sender
    20  8   member id the sender believes it is talking to (0: unknown)

A newer protocol may make this longer; a reader only needs the first four bytes to refuse a
version it does not speak. REFUSE carries a UTF-8 reason of at most
``REFUSE_REASON_BYTES_MAX`` bytes.

Decoding never trusts its input: every defect (an unknown type, a length that does not add
up, a flag that is not defined, entries that fail their checksums or are out of sequence) is a
:class:`MalformedMessageError` (a ``ValueError``) with the body offset where it was found.
No input makes a decoder raise anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from pyraft.core.messages import (
    LOCAL_TYPES,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
    wire_message,
)
from pyraft.errors import MalformedMessageError, OversizedMessageError
from raftcore.errors import FramingError
from raftcore.framing import (
    FRAME_BYTES_MAX,
    FRAME_HEADER_BYTES,
    MESSAGE_HEAD_BYTES,
    FrameDecoder,
    decode_entries_at,
    empty_batch,
    frame_header,
    pack_message_head,
    read_message_head,
)

__all__ = [
    "PROTOCOL_VERSION",
    "BODY_VERSION",
    "FRAME_RAFT",
    "FRAME_HELLO",
    "FRAME_ACCEPT",
    "FRAME_REFUSE",
    "FRAME_USER",
    "encode_user",
    "FORWARDED_TYPES",
    "WIRE_TYPES",
    "RETIRED_TYPE_CODES",
    "REFUSE_REASON_BYTES_MAX",
    "MalformedMessageError",
    "OversizedMessageError",
    "Hello",
    "encode_message",
    "decode_message",
    "decode_body",
    "encode_hello",
    "encode_accept",
    "decode_hello",
    "encode_refuse",
    "decode_refuse",
]

#: version of the connection protocol, exchanged in HELLO / ACCEPT
PROTOCOL_VERSION = 1
#: version of the Raft message body layout (first byte of every FRAME_RAFT body)
BODY_VERSION = 1

FRAME_RAFT = 1
FRAME_HELLO = 2
FRAME_ACCEPT = 3
FRAME_REFUSE = 4
FRAME_USER = 5  # an application message between members (pyraft.cluster.messaging)

#: local events that a follower forwards to its leader (``RaftNode._step_follower``): they
#: travel between members although ``messages.LOCAL_TYPES`` lists them
FORWARDED_TYPES = frozenset({MessageType.READ_INDEX, MessageType.TRANSFER_LEADER})
#: the message types allowed on the wire; HUP, CHECK_QUORUM, SNAPSHOT_STATUS are not
WIRE_TYPES = frozenset(set(MessageType) - (LOCAL_TYPES - FORWARDED_TYPES))
#: type codes that no longer name a message type, kept out of use so that the others keep
#: their numbers: a body with one of them is malformed
RETIRED_TYPE_CODES = {1: "PROPOSE"}

REFUSE_REASON_BYTES_MAX = 1024

_FLAG_REJECT = 1
_FLAG_TRANSFER = 2
_FLAG_SNAPSHOT_DONE = 4
_FLAG_FRESH = 8
_FLAGS_KNOWN = _FLAG_REJECT | _FLAG_TRANSFER | _FLAG_SNAPSHOT_DONE | _FLAG_FRESH

# The body's fixed head (version, type, flags, reserved, context length, entries length,
# snapshot chunk length, src, dst, term, log_term, index, commit, reject_hint, hint_term,
# snapshot_offset) is packed and read by the framing kernel (pack_message_head,
# read_message_head): in the compiled build a message's C fields go to and from the wire
# without a Python integer each.
_BODY_SIZE = MESSAGE_HEAD_BYTES
_META = struct.Struct("<QQII")  # snapshot index, term, voter count, learner count
_ID = struct.Struct("<Q")
_HELLO = struct.Struct("<IQQQ")
_VERSION = struct.Struct("<I")
_U32_MAX = 0xFFFFFFFF

_TYPE_BY_CODE = {int(t): t for t in WIRE_TYPES}
# the types the codec tests for on every message, as module constants (a lookup in the
# module's namespace instead of an attribute lookup on the enum class)
_APPEND = MessageType.APPEND
_SNAPSHOT = MessageType.SNAPSHOT



# ---- Raft messages ---------------------------------------------------------------------------


def encode_message(message: Message, frame_bytes_max: int = FRAME_BYTES_MAX) -> list:
    """Encode ``message`` as one FRAME_RAFT frame: a list of buffers to pass to ``writelines``.

    The first buffer holds the frame header and the fixed part of the body; entry records and
    the snapshot chunk follow as they are (zero-copy views). Raises
    :class:`MalformedMessageError` for a message that may not travel (a local-only type, a field
    out of range, entries on a type other than APPEND, ...) and :class:`OversizedMessageError`
    when the body would exceed ``frame_bytes_max``.
    """
    if not isinstance(message, Message):
        raise MalformedMessageError(f"cannot encode {type(message).__name__}: not a Message")
    msg = message  # the compiled build reads its fields directly (codec.pxd)
    mtype = msg.type
    if mtype not in WIRE_TYPES:
        raise MalformedMessageError(f"message type {mtype!r} may not be sent to another member")
    flags = (
        (_FLAG_REJECT if msg.reject else 0)
        | (_FLAG_TRANSFER if msg.transfer else 0)
        | (_FLAG_SNAPSHOT_DONE if msg.snapshot_done else 0)
        | (_FLAG_FRESH if msg.fresh else 0)
    )
    context = msg.context
    entries = msg.entries
    entry_data = None
    if entries is not None and entries.nbytes:
        if mtype is not _APPEND:
            raise MalformedMessageError(f"{mtype.name} messages carry no entries")
        after = msg.index  # a Python integer in both builds (codec.pxd): + 1 cannot overflow
        after += 1
        if entries.first_index != after:
            raise MalformedMessageError(
                f"entries start at {entries.first_index}, not at index + 1 = {after}"
            )
        entry_data = entries.data
    snapshot = msg.snapshot
    meta_part = b""
    chunk = None
    if mtype is _SNAPSHOT:
        if snapshot is None:
            raise MalformedMessageError("a SNAPSHOT message needs a snapshot")
        meta = snapshot.meta
        members = (*meta.voters, *meta.learners)
        try:
            meta_part = _META.pack(meta.index, meta.term, len(meta.voters), len(meta.learners))
            meta_part += struct.pack(f"<{len(members)}Q", *members)
            info = msgpack.packb([[m, a, dict(md)] for m, a, md in meta.members_info])
            meta_part += struct.pack("<I", len(info)) + info
        except struct.error as exc:
            raise MalformedMessageError(f"snapshot metadata out of range: {exc}") from None
        chunk = memoryview(snapshot.data).cast("B") if len(snapshot.data) else None
    elif snapshot is not None:
        raise MalformedMessageError(f"{mtype.name} messages carry no snapshot")
    context_length = len(context)
    entries_length = 0 if entry_data is None else len(entry_data)
    chunk_length = 0 if chunk is None else len(chunk)
    if (msg.src | msg.dst | msg.term | msg.log_term | msg.index
            | msg.commit | msg.reject_hint | msg.hint_term
            | msg.snapshot_offset) >> 63:
        # negative, or past 2**63 - 1: terms, indexes and ids are signed 64-bit in the core
        raise MalformedMessageError("message field out of range: ids, terms, indexes and "
                                    "offsets are 0 .. 2**63 - 1")
    if (context_length | entries_length | chunk_length) >> 32:
        raise MalformedMessageError("message field out of range: a length over 2**32 - 1")
    try:
        head = pack_message_head(
            BODY_VERSION,
            mtype,
            flags,
            context_length,
            entries_length,
            chunk_length,
            msg.src,
            msg.dst,
            msg.term,
            msg.log_term,
            msg.index,
            msg.commit,
            msg.reject_hint,
            msg.hint_term,
            msg.snapshot_offset,
        )
    except OverflowError as exc:
        raise MalformedMessageError(f"message field out of range: {exc}") from None
    if meta_part:
        head += meta_part
    if context_length:
        try:
            head += context
        except TypeError:
            raise MalformedMessageError("context must be bytes") from None
    size = len(head) + entries_length + chunk_length
    if size > frame_bytes_max or size > _U32_MAX:
        raise OversizedMessageError(
            f"{mtype.name} message of {size} bytes exceeds frame_bytes_max {frame_bytes_max}"
        )
    if entry_data is None and chunk is None:
        return [frame_header(FRAME_RAFT, head), head]
    tail = entry_data if entry_data is not None else chunk  # never both (checked above)
    return [frame_header(FRAME_RAFT, head, tail), head, tail]


def decode_body(body) -> Message:
    """Decode the body of one FRAME_RAFT frame (as ``FrameDecoder.feed`` yields it).

    Entry records are checked (checksums, sequence from ``index + 1``) and returned as an
    ``EntryBatch`` viewing ``body`` without a copy. Raises :class:`MalformedMessageError`.
    """
    # bytes (what FrameDecoder yields) are read as they are: a view is made only for another
    # buffer, or for a snapshot's metadata
    flat = body if type(body) is bytes else _flat_view(body)
    size = len(flat)
    if size < _BODY_SIZE:
        raise MalformedMessageError(
            f"message body of {size} bytes is shorter than its {_BODY_SIZE}-byte header", 0
        )
    head = read_message_head(flat)
    version = head.version
    code = head.code
    flags = head.flags
    reserved = head.reserved
    context_length = head.context_length
    entries_length = head.entries_length
    chunk_length = head.chunk_length
    src = head.src
    dst = head.dst
    term = head.term
    log_term = head.log_term
    index = head.index
    commit = head.commit
    reject_hint = head.reject_hint
    hint_term = head.hint_term
    snapshot_offset = head.snapshot_offset
    if version != BODY_VERSION:
        raise MalformedMessageError(f"unknown message body version {version}", 0)
    mtype = _TYPE_BY_CODE.get(code)
    if mtype is None and code in RETIRED_TYPE_CODES:
        raise MalformedMessageError(
            f"message type {code} ({RETIRED_TYPE_CODES[code]}) was retired and is not allowed "
            "on the wire", 1)
    if mtype is None:
        raise MalformedMessageError(f"message type {code} is not allowed on the wire", 1)
    if flags & ~_FLAGS_KNOWN:
        raise MalformedMessageError(f"undefined message flags 0x{flags:02x}", 2)
    if reserved:
        raise MalformedMessageError(f"reserved byte is {reserved}, not 0", 3)
    if src == 0 or dst == 0:
        raise MalformedMessageError("member id 0 in src or dst", 16)
    if (src | dst | term | log_term | index | commit | reject_hint | hint_term
            | snapshot_offset) >> 63:
        # the core holds ids, terms, indexes and offsets as signed 64-bit integers
        raise MalformedMessageError("a member id, term, index or offset is over 2**63 - 1", 16)
    if entries_length and mtype is not _APPEND:
        raise MalformedMessageError(f"{mtype.name} message carries entries", 8)
    pos = _BODY_SIZE
    snapshot_meta = None
    if mtype is _SNAPSHOT:
        snapshot_meta, pos = _decode_meta(memoryview(flat), pos)
    elif chunk_length:
        raise MalformedMessageError(f"{mtype.name} message carries snapshot data", 12)
    if size - pos != context_length + entries_length + chunk_length:
        raise MalformedMessageError(
            f"body has {size - pos} bytes after its header, the lengths announce "
            f"{context_length} + {entries_length} + {chunk_length}",
            pos,
        )
    context = bytes(flat[pos : pos + context_length]) if context_length else b""
    pos += context_length
    entries = None
    if mtype is _APPEND:
        if index >= 0x7FFFFFFFFFFFFFFF:
            raise MalformedMessageError("APPEND index leaves no room for entries", 16 + 32)
        if entries_length:
            try:
                entries = decode_entries_at(flat, pos, entries_length, index + 1)
            except (ValueError, OverflowError) as exc:
                raise MalformedMessageError(f"bad entries: {exc}", pos) from None
        else:
            entries = empty_batch(index + 1)
        pos += entries_length
    snapshot = None
    if snapshot_meta is not None:
        snapshot = Snapshot(snapshot_meta, bytes(flat[pos : pos + chunk_length]))
    return wire_message(
        mtype, src, dst, term, log_term, index, commit, entries, bool(flags & _FLAG_REJECT),
        reject_hint, hint_term, context, snapshot, bool(flags & _FLAG_TRANSFER),
        snapshot_offset, bool(flags & _FLAG_SNAPSHOT_DONE), bool(flags & _FLAG_FRESH))


def _flat_view(body: Any) -> memoryview:
    """``body`` (any buffer) as a flat view of bytes."""
    view = memoryview(body)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _decode_meta(view: memoryview, pos: int) -> tuple[SnapshotMeta, int]:
    size = len(view)
    if size - pos < _META.size:
        raise MalformedMessageError("body ends inside the snapshot metadata", pos)
    meta_index, meta_term, voter_count, learner_count = _META.unpack_from(view, pos)
    if meta_index == 0 or meta_term == 0:
        raise MalformedMessageError("snapshot index and term must be >= 1", pos)
    pos += _META.size
    count = voter_count + learner_count
    if count * _ID.size > size - pos:
        raise MalformedMessageError(
            f"snapshot metadata announces {count} members, the body is too short", pos
        )
    members = struct.unpack_from(f"<{count}Q", view, pos)
    if 0 in members:
        raise MalformedMessageError("member id 0 in the snapshot configuration", pos)
    if len(set(members)) != count:
        raise MalformedMessageError("a member appears twice in the snapshot configuration", pos)
    pos += count * _ID.size
    if size - pos < 4:
        raise MalformedMessageError("body ends before the snapshot members' addresses", pos)
    (info_length,) = struct.unpack_from("<I", view, pos)
    pos += 4
    if info_length > size - pos:
        raise MalformedMessageError("snapshot members' addresses run past the body", pos)
    try:
        records = msgpack.unpackb(bytes(view[pos : pos + info_length]))
        info = tuple(sorted(
            (int(m), str(a), tuple(sorted((str(k), str(v)) for k, v in md.items())))
            for m, a, md in records
        ))
    except Exception as exc:  # msgpack and the shape checks raise several types
        # the type, not the text: Python and the compiled build word the same failure
        # differently ("cannot unpack non-iterable int object" / "'int' object is not
        # iterable"), and both builds must refuse a message with the same error
        raise MalformedMessageError(
            "bad snapshot members' addresses (not msgpack [member, address, labels] records: "
            f"{type(exc).__name__})", pos) from None
    meta = SnapshotMeta(
        index=meta_index,
        term=meta_term,
        voters=tuple(members[:voter_count]),
        learners=tuple(members[voter_count:]),
        members_info=info,
    )
    return meta, pos + info_length


def decode_message(frame, *, frame_bytes_max: int = FRAME_BYTES_MAX) -> Message:
    """Decode ONE whole FRAME_RAFT frame (header and body, nothing before or after).

    For callers holding complete frames (the in-memory transport, tests); a stream transport
    feeds a ``FrameDecoder`` and calls :func:`decode_body` on each RAFT body. Raises
    :class:`MalformedMessageError` (frame errors included, with the frame error as cause).
    """
    frame_type, body = _single_frame(frame, frame_bytes_max)
    if frame_type != FRAME_RAFT:
        raise MalformedMessageError(f"frame type {frame_type} is not a Raft message")
    return decode_body(body)


def _single_frame(frame, frame_bytes_max: int) -> tuple[int, bytes]:
    decoder = FrameDecoder(frame_bytes_max)
    try:
        frames = decoder.feed(frame)
    except FramingError as exc:
        raise MalformedMessageError(f"bad frame: {exc}") from exc
    except (TypeError, BufferError) as exc:
        raise MalformedMessageError(f"not a byte buffer: {exc}") from None
    if len(frames) != 1 or decoder.buffered:
        if not frames:
            raise MalformedMessageError(
                f"truncated frame: {decoder.buffered} bytes, a frame needs at least "
                f"{FRAME_HEADER_BYTES} and its whole body"
            )
        raise MalformedMessageError("bytes after the end of the frame")
    return frames[0]


# ---- handshake -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """Body of HELLO (the connecting side) and ACCEPT (the accepting side's answer)."""

    protocol_version: int
    cluster_id: int
    member_id: int  # the sender
    peer_id: int = 0  # the member the sender believes it talks to; 0 when unknown


def _encode_hello(frame_type: int, hello: Hello) -> bytes:
    try:
        body = _HELLO.pack(hello.protocol_version, hello.cluster_id, hello.member_id, hello.peer_id)
    except struct.error as exc:
        raise MalformedMessageError(f"handshake field out of range: {exc}") from None
    return frame_header(frame_type, body) + body


def encode_hello(hello: Hello) -> bytes:
    """The whole HELLO frame."""
    return _encode_hello(FRAME_HELLO, hello)


def encode_accept(hello: Hello) -> bytes:
    """The whole ACCEPT frame (the acceptor's own version, cluster and member id)."""
    return _encode_hello(FRAME_ACCEPT, hello)


def decode_hello(body) -> Hello:
    """Decode a HELLO or ACCEPT body.

    A body from another protocol version is returned as far as it can be read (at least the
    version), so that the caller can refuse it by name; for this version the length must be
    exact.
    """
    view = memoryview(body).cast("B")
    size = len(view)
    if size < _VERSION.size:
        raise MalformedMessageError(f"handshake of {size} bytes has no protocol version", 0)
    (version,) = _VERSION.unpack_from(view)
    if size >= _HELLO.size:
        if version == PROTOCOL_VERSION and size != _HELLO.size:
            raise MalformedMessageError(
                f"handshake of {size} bytes, version {version} has {_HELLO.size}", _HELLO.size
            )
        return Hello(*_HELLO.unpack_from(view))
    if version == PROTOCOL_VERSION:
        raise MalformedMessageError(f"handshake of {size} bytes is truncated", size)
    return Hello(version, 0, 0, 0)


def encode_refuse(reason: str) -> bytes:
    """The whole REFUSE frame; ``reason`` is cut to ``REFUSE_REASON_BYTES_MAX`` bytes."""
    body = reason.encode("utf-8")[:REFUSE_REASON_BYTES_MAX]
    return frame_header(FRAME_REFUSE, body) + body


def decode_refuse(body) -> str:
    """The reason in a REFUSE body, made safe to log (printable ASCII, escapes for the rest)."""
    view = memoryview(body).cast("B")
    if len(view) > REFUSE_REASON_BYTES_MAX:
        raise MalformedMessageError(
            f"refusal reason of {len(view)} bytes exceeds {REFUSE_REASON_BYTES_MAX}",
            REFUSE_REASON_BYTES_MAX,
        )
    text = bytes(view).decode("utf-8", errors="replace")
    return "".join(c if c.isprintable() and c.isascii() else repr(c)[1:-1] for c in text)


def encode_user(body, *, frame_bytes_max: int = FRAME_BYTES_MAX) -> list:
    """A FRAME_USER frame around ``body`` (opaque to the transport), as buffers."""
    body = memoryview(body).cast("B")
    if len(body) > frame_bytes_max:
        raise OversizedMessageError(
            f"a member message of {len(body)} bytes exceeds frame_bytes_max {frame_bytes_max}",
            0)
    return [frame_header(FRAME_USER, body), body]
