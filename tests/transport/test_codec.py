"""Wire codec: every wire message survives a round trip, and no input makes decoding crash.

The frame a message becomes is checked against ``raftcore.framing.encode_frame`` of the joined
body (the codec chains the body checksum over several buffers itself: the pair check).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft import _compiled
from pyraft.core import messages as messages_module
from pyraft.core.messages import (
    LOCAL_TYPES,
    MESSAGE_FIELDS,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from pyraft.transport import codec
from pyraft.transport.codec import (
    FRAME_ACCEPT,
    FRAME_HELLO,
    FRAME_RAFT,
    FRAME_REFUSE,
    PROTOCOL_VERSION,
    WIRE_TYPES,
    Hello,
    MalformedMessageError,
    OversizedMessageError,
    decode_body,
    decode_hello,
    decode_message,
    decode_refuse,
    encode_accept,
    encode_hello,
    encode_message,
    encode_refuse,
)
from raftcore.framing import FrameDecoder, encode_entries, encode_frame

# ids, terms, indexes and offsets are signed 64-bit integers in the core: the wire's u64
# fields carry 0 .. 2**63 - 1 (more is a malformed message)
U64 = st.integers(0, 2**63 - 1)
IDS = st.integers(1, 2**63 - 1)
T = MessageType


def frame_bytes(parts) -> bytes:
    return b"".join(bytes(part) for part in parts)


def body_of(message: Message) -> bytes:
    return frame_bytes(encode_message(message))[16:]


def normalized(message: Message) -> tuple:
    """Comparable form; an APPEND without entries decodes with an empty batch."""
    entries = message.entries
    entry_view = None
    if entries is not None and len(entries):
        entry_view = (entries.first_index, entries.tobytes())
    return (
        message.type, message.src, message.dst, message.term, message.log_term, message.index,
        message.commit, entry_view, message.reject, message.reject_hint, message.hint_term,
        bytes(message.context), message.snapshot, message.transfer,
        message.snapshot_offset, message.snapshot_done,
    )


@st.composite
def messages(draw):
    mtype = draw(st.sampled_from(sorted(WIRE_TYPES)))
    index = draw(st.integers(0, 2**62))
    fields = dict(
        term=draw(U64), log_term=draw(U64), index=index, commit=draw(U64),
        reject=draw(st.booleans()), reject_hint=draw(U64), hint_term=draw(U64),
        context=draw(st.binary(max_size=40)),
        transfer=draw(st.booleans()), snapshot_offset=draw(U64),
        snapshot_done=draw(st.booleans()),
    )
    if mtype is T.APPEND:
        n = draw(st.integers(0, 5))
        if n:
            payloads = draw(st.lists(st.binary(max_size=50), min_size=n, max_size=n))
            fields["entries"] = encode_entries(index + 1, draw(st.integers(1, 2**40)), payloads)
    if mtype is T.SNAPSHOT:
        members = draw(st.lists(IDS, unique=True, max_size=7))
        split = draw(st.integers(0, len(members)))
        meta = SnapshotMeta(draw(IDS), draw(IDS), tuple(members[:split]), tuple(members[split:]))
        fields["snapshot"] = Snapshot(meta, draw(st.binary(max_size=200)))
    return Message(mtype, draw(IDS), draw(IDS), **fields)


@given(messages())
def test_every_wire_message_survives_a_round_trip(message):
    parts = encode_message(message)
    frame = frame_bytes(parts)
    assert normalized(decode_message(frame)) == normalized(message)
    # the frame is exactly the kernel's frame of the joined body
    assert frame == encode_frame(FRAME_RAFT, frame[16:])
    [(frame_type, body)] = FrameDecoder().feed(frame)
    assert frame_type == FRAME_RAFT
    assert normalized(decode_body(body)) == normalized(message)


def test_entries_and_snapshot_chunk_are_sent_without_a_copy():
    entries = encode_entries(8, 3, [b"a" * 100, b"b" * 200])
    message = Message(T.APPEND, 1, 2, term=3, index=7, log_term=3, entries=entries)
    parts = encode_message(message)  # the frame header, the fixed part, the records
    assert len(parts) == 3 and parts[2].obj is entries.buffer
    chunk = b"s" * 1000
    meta = SnapshotMeta(10, 2, (1, 2, 3))
    parts = encode_message(Message(T.SNAPSHOT, 1, 2, snapshot=Snapshot(meta, chunk)))
    assert len(parts) == 3 and parts[2].obj is chunk


def test_received_entries_view_the_frame_body_and_keep_their_checks():
    entries = encode_entries(8, 3, [b"hello", b"world"])
    body = body_of(Message(T.APPEND, 1, 2, index=7, entries=entries))
    decoded = decode_body(body).entries
    assert decoded.first_index == 8 and [bytes(p) for p in decoded.payloads()] == [
        b"hello", b"world"
    ]
    assert bytes(decoded.data) == entries.tobytes()


def test_an_append_without_entries_decodes_with_an_empty_batch_at_index_plus_one():
    decoded = decode_body(body_of(Message(T.APPEND, 1, 2, index=41)))
    assert len(decoded.entries) == 0 and decoded.entries.first_index == 42


@pytest.mark.parametrize("mtype", sorted(LOCAL_TYPES - codec.FORWARDED_TYPES))
def test_local_types_are_refused_both_ways(mtype):
    with pytest.raises(MalformedMessageError):
        encode_message(Message(mtype, 1, 2))
    body = bytearray(body_of(Message(T.HEARTBEAT, 1, 2)))
    body[1] = mtype
    with pytest.raises(MalformedMessageError, match="not allowed on the wire"):
        decode_body(bytes(body))


@pytest.mark.parametrize("mtype", sorted(codec.FORWARDED_TYPES))
def test_local_events_a_follower_forwards_to_its_leader_travel(mtype):
    message = Message(mtype, 2, 1, context=b"read-7", index=3)
    assert normalized(decode_body(body_of(message))) == normalized(message)


@pytest.mark.parametrize(
    "message, match",
    [
        (Message(T.HEARTBEAT, 1, 2, entries=encode_entries(1, 1, [b"x"])), "carry no entries"),
        (Message(T.APPEND, 1, 2, index=5, entries=encode_entries(1, 1, [b"x"])), "index \\+ 1"),
        (Message(T.SNAPSHOT, 1, 2), "needs a snapshot"),
        (
            Message(T.HEARTBEAT, 1, 2, snapshot=Snapshot(SnapshotMeta(1, 1, (1,)), b"")),
            "carry no snapshot",
        ),
        (Message(T.HEARTBEAT, 1, 2, term=-1), "out of range"),
        (Message(T.HEARTBEAT, 1, -2), "out of range"),
        (Message(T.HEARTBEAT, 1, 2, context="text"), "context must be bytes"),
    ],
)
def test_messages_that_cannot_travel_are_refused_when_encoding(message, match):
    with pytest.raises(MalformedMessageError, match=match):
        encode_message(message)


@pytest.mark.parametrize("twin", [False, True], ids=["in-use", "py-twin"])
def test_encoding_what_is_not_a_message_is_a_typed_error_in_both_builds(twin):
    # the compiled encoder reads a Message's fields directly (codec.pxd): it checks the type
    module = _compiled.load_twin("pyraft.transport.codec") if twin else codec
    for thing in (None, object(), "HEARTBEAT", 3):
        with pytest.raises(MalformedMessageError, match="not a Message"):
            module.encode_message(thing)
    # index + 1 at the 64-bit edge is computed without overflow in either build
    edge = Message(T.APPEND, 1, 2, index=2**63 - 1, entries=encode_entries(1, 1, [b"x"]))
    with pytest.raises(MalformedMessageError, match=f"index \\+ 1 = {2**63}"):
        module.encode_message(edge)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview,
                                  lambda b: memoryview(b).toreadonly(),
                                  lambda b: memoryview(b).cast("Q")],
                         ids=["bytes", "bytearray", "memoryview", "readonly", "u64-view"])
def test_a_body_decodes_from_any_byte_buffer(wrap):
    # the decoder reads bytes (what FrameDecoder yields) directly and other buffers as bytes
    message = Message(T.HEARTBEAT, 1, 2, term=2, commit=3, context=b"8 bytes!")
    body = body_of(message)
    assert len(body) % 8 == 0  # so that a view of 8-byte items can hold it
    assert normalized(decode_body(wrap(body))) == normalized(message)


def test_a_message_larger_than_frame_bytes_max_is_refused_when_encoding():
    entries = encode_entries(1, 1, [b"x" * 1000])
    message = Message(T.APPEND, 1, 2, index=0, entries=entries)
    with pytest.raises(OversizedMessageError):
        encode_message(message, frame_bytes_max=1000)
    assert encode_message(message, frame_bytes_max=2000)


def patched(body: bytes, offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(body)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


HEARTBEAT = body_of(Message(T.HEARTBEAT, 1, 2, term=4, context=b"ctx"))
APPEND = body_of(
    Message(T.APPEND, 1, 2, index=9, entries=encode_entries(10, 2, [b"p1", b"p2"]))
)
SNAPSHOT = body_of(
    Message(T.SNAPSHOT, 1, 2, snapshot=Snapshot(SnapshotMeta(5, 2, (1, 2), (3,)), b"chunk"))
)


@pytest.mark.parametrize(
    "body, match",
    [
        (b"", "shorter than"),
        (HEARTBEAT[:87], "shorter than"),
        (patched(HEARTBEAT, 0, "<B", 2), "body version"),
        (patched(HEARTBEAT, 1, "<B", 99), "not allowed"),
        (patched(HEARTBEAT, 2, "<B", 0x80), "flags"),
        (patched(HEARTBEAT, 3, "<B", 1), "reserved byte is 1"),
        (patched(HEARTBEAT, 1, "<B", 1), "type 1 \\(PROPOSE\\) was retired"),
        (patched(HEARTBEAT, 4, "<I", 4), "lengths announce"),
        (patched(HEARTBEAT, 4, "<I", 0xFFFFFFFF), "lengths announce"),
        (HEARTBEAT + b"x", "lengths announce"),
        (HEARTBEAT[:-1], "lengths announce"),
        (patched(HEARTBEAT, 8, "<I", 3), "carries entries"),
        (patched(HEARTBEAT, 12, "<I", 3), "snapshot data"),
        (patched(HEARTBEAT, 16, "<Q", 0), "member id 0"),
        (patched(HEARTBEAT, 24, "<Q", 0), "member id 0"),
        (patched(APPEND, 48, "<Q", 10), "bad entries"),  # index: entries must start at 11
        (patched(APPEND, 48, "<Q", 2**63 - 1), "no room"),
        (patched(APPEND, 48, "<Q", 2**64 - 1), "over 2\\*\\*63 - 1"),
        (patched(HEARTBEAT, 32, "<Q", 2**63), "over 2\\*\\*63 - 1"),  # term
        (APPEND[:-1] + bytes([APPEND[-1] ^ 1]), "bad entries"),  # payload checksum
        (patched(SNAPSHOT, 88, "<Q", 0), "index and term"),
        (patched(SNAPSHOT, 104, "<I", 1000), "too short"),
        (patched(SNAPSHOT, 112, "<Q", 2), "twice"),
        (patched(SNAPSHOT, 112, "<Q", 0), "member id 0"),
        (SNAPSHOT[:100], "inside the snapshot metadata"),
    ],
)
def test_defective_bodies_are_typed_errors(body, match):
    with pytest.raises(MalformedMessageError, match=match) as info:
        decode_body(body)
    assert isinstance(info.value, ValueError)


def test_decode_message_wants_exactly_one_raft_frame():
    frame = frame_bytes(encode_message(Message(T.HEARTBEAT, 1, 2)))
    for bad, match in [
        (frame[:-1], "truncated"),
        (frame[:10], "truncated"),
        (frame + frame, "after the end"),
        (frame + b"x", "after the end"),
        (b"\x00" * 16, "bad frame"),
        (encode_hello(Hello(1, 1, 1)), "not a Raft message"),
        ("text", "not a byte buffer"),
    ]:
        with pytest.raises(MalformedMessageError, match=match):
            decode_message(bad)
    with pytest.raises(MalformedMessageError, match="bad frame") as info:
        decode_message(frame, frame_bytes_max=10)
    assert info.value.__cause__ is not None


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoders(data):
    for decode in (decode_body, decode_message, decode_hello, decode_refuse):
        try:
            decode(data)
        except MalformedMessageError:
            pass


@given(messages(), st.data())
def test_damaged_bodies_decode_or_fail_typed(message, data):
    body = bytearray(body_of(message))
    action = data.draw(st.sampled_from(["flip", "truncate", "extend", "overwrite"]))
    if action == "flip":
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "truncate":
        del body[data.draw(st.integers(0, len(body) - 1)) :]
    elif action == "extend":
        body += data.draw(st.binary(min_size=1, max_size=20))
    else:
        position = data.draw(st.integers(0, len(body) - 1))
        value = data.draw(st.binary(min_size=1, max_size=8))
        body[position : position + len(value)] = value
    try:
        decoded = decode_body(bytes(body))
    except MalformedMessageError:
        return
    assert decoded.type in WIRE_TYPES and decoded.src and decoded.dst


@given(U64, U64, U64)
def test_handshakes_round_trip(cluster_id, member_id, peer_id):
    hello = Hello(PROTOCOL_VERSION, cluster_id, member_id, peer_id)
    for encode, frame_type in ((encode_hello, FRAME_HELLO), (encode_accept, FRAME_ACCEPT)):
        [(decoded_type, body)] = FrameDecoder().feed(encode(hello))
        assert decoded_type == frame_type and decode_hello(body) == hello


def test_a_handshake_from_another_version_is_read_as_far_as_its_version():
    assert decode_hello(struct.pack("<I", 2)) == Hello(2, 0, 0, 0)
    longer = struct.pack("<IQQQ", 3, 9, 4, 1) + b"future fields"
    assert decode_hello(longer) == Hello(3, 9, 4, 1)
    with pytest.raises(MalformedMessageError, match="truncated"):
        decode_hello(struct.pack("<IQ", PROTOCOL_VERSION, 9))
    with pytest.raises(MalformedMessageError):
        decode_hello(struct.pack("<IQQQ", PROTOCOL_VERSION, 9, 4, 1) + b"x")
    with pytest.raises(MalformedMessageError):
        decode_hello(b"\x01")
    with pytest.raises(MalformedMessageError, match="out of range"):
        encode_hello(Hello(PROTOCOL_VERSION, 2**64, 1))


def test_refusal_reasons_are_bounded_and_safe_to_log():
    [(frame_type, body)] = FrameDecoder().feed(encode_refuse("cluster id 8 is not 7"))
    assert frame_type == FRAME_REFUSE and decode_refuse(body) == "cluster id 8 is not 7"
    [(_, body)] = FrameDecoder().feed(encode_refuse("é" * 5000))
    assert len(body) == codec.REFUSE_REASON_BYTES_MAX
    assert decode_refuse(b"a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    with pytest.raises(MalformedMessageError):
        decode_refuse(b"x" * (codec.REFUSE_REASON_BYTES_MAX + 1))


def test_errors_keep_their_offset_across_pickling():
    import pickle

    error = MalformedMessageError("bad", 12)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.offset, str(copy)) == ("bad", 12, str(error))


def test_wire_types_are_all_but_the_purely_local_events():
    assert T.READ_INDEX in WIRE_TYPES and T.TRANSFER_LEADER in WIRE_TYPES
    for mtype in (T.HUP, T.CHECK_QUORUM, T.SNAPSHOT_STATUS):
        assert mtype not in WIRE_TYPES


def test_the_retired_propose_code_names_no_type_and_the_others_keep_their_numbers():
    """PROPOSE had no producer and was deleted; its wire byte stays out of use."""
    assert "PROPOSE" not in MessageType.__members__
    assert 1 not in {int(t) for t in MessageType}
    assert {name: int(MessageType[name]) for name in ("HUP", "READ_INDEX", "APPEND",
                                                      "SNAPSHOT_RESPONSE", "MEMBER_INFO")} == {
        "HUP": 0, "READ_INDEX": 2, "APPEND": 10, "SNAPSHOT_RESPONSE": 22, "MEMBER_INFO": 23}
    with pytest.raises(MalformedMessageError, match="retired") as caught:
        decode_body(patched(HEARTBEAT, 1, "<B", 1))
    assert caught.value.offset == 1 and isinstance(caught.value, ValueError)
    assert not {"payloads", "kind"} & set(MESSAGE_FIELDS)


@pytest.mark.parametrize("twin", [False, True], ids=["build", "source"])
def test_the_decoder_builds_the_message_the_constructor_builds(twin):
    """``wire_message`` (the decoder's factory: every field set directly) gives what
    ``Message(...)`` gives for the same fields, in the build and from the ``.py`` source."""
    module = _compiled.load_twin("pyraft.core.messages") if twin else messages_module
    snapshot = Snapshot(SnapshotMeta(9, 3, (1, 2), (4,)), b"chunk")
    fields = dict(type=T.SNAPSHOT, src=2, dst=1, term=3, log_term=2, index=9, commit=8,
                  entries=None, reject=True, reject_hint=4, hint_term=2, context=b"r",
                  snapshot=snapshot, transfer=True, snapshot_offset=5, snapshot_done=False,
                  fresh=True)
    built = module.wire_message(*(fields[name] for name in MESSAGE_FIELDS))
    assert normalized(built) == normalized(module.Message(**fields))
    message = Message(T.APPEND_RESPONSE, 2, 1, term=3, index=9, reject=True, reject_hint=4,
                      hint_term=2, context=b"r")
    assert normalized(decode_body(body_of(message))) == normalized(message)


def test_snapshot_meta_carries_member_addresses():
    info = ((1, "127.0.0.1:7001", (("zone", "a"),)), (4, "[::1]:7004", ()))
    meta = SnapshotMeta(9, 3, (1, 2), (4,), info)
    message = Message(MessageType.SNAPSHOT, 1, 2, term=3,
                      snapshot=Snapshot(meta, b"chunk"), snapshot_offset=0)
    frame = b"".join(bytes(part) for part in codec.encode_message(message))
    decoded = codec.decode_message(frame)
    assert decoded.snapshot.meta == meta and decoded.snapshot.data == b"chunk"
