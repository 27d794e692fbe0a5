"""Log-entry records, entry batches and transport frames (see docs/format.md).

Compiled kernel ``raftcore._framing``, or its pure-Python twin when ``PYRAFT_NO_EXTENSIONS=1``.
"""

from raftcore._select import load

_impl = load("framing")

EntryBatch = _impl.EntryBatch
encode_entries = _impl.encode_entries
decode_entries = _impl.decode_entries
decode_entries_at = _impl.decode_entries_at
scan_entries = _impl.scan_entries
concat_batches = _impl.concat_batches
empty_batch = _impl.empty_batch
frame_header = _impl.frame_header
encode_frame = _impl.encode_frame
FrameDecoder = _impl.FrameDecoder
MessageHead = _impl.MessageHead
pack_message_head = _impl.pack_message_head
read_message_head = _impl.read_message_head

IMPLEMENTATION: str = _impl.IMPLEMENTATION
RECORD_HEADER_BYTES: int = _impl.RECORD_HEADER_BYTES
RECORD_VERSION: int = _impl.RECORD_VERSION
RECORD_PAYLOAD_BYTES_MAX: int = _impl.RECORD_PAYLOAD_BYTES_MAX
KIND_COMMAND: int = _impl.KIND_COMMAND
KIND_CONFIGURATION: int = _impl.KIND_CONFIGURATION
KIND_NOOP: int = _impl.KIND_NOOP
FRAME_HEADER_BYTES: int = _impl.FRAME_HEADER_BYTES
FRAME_MAGIC: int = _impl.FRAME_MAGIC
FRAME_VERSION: int = _impl.FRAME_VERSION
FRAME_BYTES_MAX: int = _impl.FRAME_BYTES_MAX
MESSAGE_HEAD_BYTES: int = _impl.MESSAGE_HEAD_BYTES

__all__ = [
    "EntryBatch",
    "encode_entries",
    "decode_entries",
    "decode_entries_at",
    "scan_entries",
    "concat_batches",
    "empty_batch",
    "frame_header",
    "encode_frame",
    "FrameDecoder",
    "MessageHead",
    "pack_message_head",
    "read_message_head",
    "IMPLEMENTATION",
    "RECORD_HEADER_BYTES",
    "RECORD_VERSION",
    "RECORD_PAYLOAD_BYTES_MAX",
    "KIND_COMMAND",
    "KIND_CONFIGURATION",
    "KIND_NOOP",
    "FRAME_HEADER_BYTES",
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "FRAME_BYTES_MAX",
    "MESSAGE_HEAD_BYTES",
]
