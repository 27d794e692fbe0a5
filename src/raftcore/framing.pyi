# The facade's types are the kernel's: raftcore.framing hands out raftcore._framing's names
# (or their twins', which have the same signatures).
from raftcore._framing import FRAME_BYTES_MAX as FRAME_BYTES_MAX
from raftcore._framing import FRAME_HEADER_BYTES as FRAME_HEADER_BYTES
from raftcore._framing import FRAME_MAGIC as FRAME_MAGIC
from raftcore._framing import FRAME_VERSION as FRAME_VERSION
from raftcore._framing import IMPLEMENTATION as IMPLEMENTATION
from raftcore._framing import KIND_COMMAND as KIND_COMMAND
from raftcore._framing import KIND_CONFIGURATION as KIND_CONFIGURATION
from raftcore._framing import KIND_NOOP as KIND_NOOP
from raftcore._framing import MESSAGE_HEAD_BYTES as MESSAGE_HEAD_BYTES
from raftcore._framing import RECORD_HEADER_BYTES as RECORD_HEADER_BYTES
from raftcore._framing import RECORD_PAYLOAD_BYTES_MAX as RECORD_PAYLOAD_BYTES_MAX
from raftcore._framing import RECORD_VERSION as RECORD_VERSION
from raftcore._framing import EntryBatch as EntryBatch
from raftcore._framing import FrameDecoder as FrameDecoder
from raftcore._framing import MessageHead as MessageHead
from raftcore._framing import concat_batches as concat_batches
from raftcore._framing import decode_entries as decode_entries
from raftcore._framing import decode_entries_at as decode_entries_at
from raftcore._framing import empty_batch as empty_batch
from raftcore._framing import encode_entries as encode_entries
from raftcore._framing import encode_frame as encode_frame
from raftcore._framing import frame_header as frame_header
from raftcore._framing import pack_message_head as pack_message_head
from raftcore._framing import read_message_head as read_message_head
from raftcore._framing import scan_entries as scan_entries

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
