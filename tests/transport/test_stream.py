"""The TCP transport's per-message path (``pyraft.transport.stream``), in both builds.

Each test runs on the module in use (compiled in the default build) and on its ``.py`` twin,
with a fake wire (records ``writelines``), a fake loop (records ``call_soon``) and a fake
connection (records what the inbox hands back: failures, partial frames, user frames).
The transport as a whole, over real sockets, is tests/transport/test_tcp.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyraft import _compiled
from pyraft.core.messages import Message, MessageType
from pyraft.errors import MalformedMessageError
from pyraft.transport import stream
from pyraft.transport.base import TransportCounters
from pyraft.transport.codec import FRAME_USER, encode_message
from raftcore.framing import FrameDecoder, encode_entries, encode_frame

T = MessageType


@pytest.fixture(params=["in-use", "py-twin"])
def module(request):
    return stream if request.param == "in-use" else _compiled.load_twin(stream.__name__)


def test_the_default_build_runs_the_compiled_module():
    assert _compiled.is_compiled(stream) != _compiled.PURE
    assert "pyraft.transport.stream" in _compiled.MODULES


_MIXED = """
from pyraft import _compiled
from pyraft.core.messages import Message, MessageType
from pyraft.transport import codec, stream
from pyraft.transport.base import TransportCounters
hub = stream.Hub(1, TransportCounters(), 1 << 20)
hub.serving = True
hub.outboxes[2] = stream.Outbox(hub, 4)
assert hub.send(Message(MessageType.HEARTBEAT, 1, 2, term=1)) == stream.WAITING
print(_compiled.is_compiled(codec), _compiled.is_compiled(stream))
"""


@pytest.mark.skipif(_compiled.PURE, reason="mixes compiled and pure modules: compiled build")
@pytest.mark.parametrize("pure", ["pyraft.transport.codec", "pyraft.transport.stream"])
def test_either_module_runs_pure_beside_the_other_compiled(pure):
    # PYRAFT_PURE_MODULES (the bisection switch) works for both: stream calls the codec
    # through Python, it does not cimport it (a compiled module cannot cimport a pure one)
    env = dict(os.environ, PYRAFT_PURE_MODULES=pure)
    done = subprocess.run([sys.executable, "-c", _MIXED], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    expected = "False True" if pure.endswith("codec") else "True False"
    assert done.stdout.split() == expected.split()


class Wire:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writelines(self, parts) -> None:
        self.writes.append(b"".join(bytes(part) for part in parts))


class Handle:
    def __init__(self, callback) -> None:
        self.callback, self.cancelled = callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self) -> None:
        self.handles: list[Handle] = []

    def call_soon(self, callback) -> Handle:
        self.handles.append(Handle(callback))
        return self.handles[-1]

    def turn(self) -> None:
        handles, self.handles = self.handles, []
        for handle in handles:
            if not handle.cancelled:
                handle.callback()


def heartbeat(dst: int, n: int) -> Message:
    return Message(T.HEARTBEAT, 1, dst, term=1, commit=n)


def frame(message: Message) -> bytes:
    return b"".join(bytes(part) for part in encode_message(message))


def hub_with_peers(module, *members: int, queued_max: int = 3):
    hub = module.Hub(1, TransportCounters(), 1 << 20)
    hub.loop, hub.serving = Loop(), True
    for member in members:
        hub.outboxes[member] = module.Outbox(hub, queued_max)
    return hub


def test_frames_queued_in_one_turn_leave_in_one_write_per_peer(module):
    hub = hub_with_peers(module, 2, 3)
    wires = {2: Wire(), 3: Wire()}
    for member, wire in wires.items():
        hub.outboxes[member].wire = wire
    sent = [heartbeat(dst, n) for n in range(2) for dst in (2, 3)]
    assert [hub.send(m) for m in sent] == [module.QUEUED] * 4
    assert len(hub.loop.handles) == 1  # one scheduled flush for every peer
    assert all(not wire.writes for wire in wires.values())
    hub.loop.turn()
    for member, wire in wires.items():
        assert wire.writes == [b"".join(frame(m) for m in sent if m.dst == member)]
        assert hub.outboxes[member].bytes_sent == len(wire.writes[0])
        assert hub.outboxes[member].queued == 0 and hub.outboxes[member].pending == []
    assert hub.counters.sent == 4 and hub.dirty == []


def test_the_runtime_flush_writes_at_once_and_cancels_the_scheduled_one(module):
    hub = hub_with_peers(module, 2)
    hub.outboxes[2].wire = wire = Wire()
    hub.send(heartbeat(2, 0))
    hub.flush()
    assert wire.writes == [frame(heartbeat(2, 0))]
    assert hub.loop.handles[0].cancelled and hub.handle is None
    hub.send(heartbeat(2, 1))  # the next turn schedules again
    assert len(hub.loop.handles) == 2 and not hub.loop.handles[1].cancelled


def test_the_queue_is_bounded_and_waits_without_a_wire(module):
    hub = hub_with_peers(module, 2, queued_max=3)
    outbox = hub.outboxes[2]
    results = [hub.send(heartbeat(2, n)) for n in range(5)]
    assert results == [module.WAITING] * 3 + [module.DROPPED] * 2
    assert outbox.queued == 3 and len(outbox.pending) == 6  # header + body per message
    assert hub.loop.handles == []  # nothing to flush to
    outbox.wire = wire = Wire()
    outbox.flush()  # what the transport does once connected
    assert wire.writes == [b"".join(frame(heartbeat(2, n)) for n in range(3))]
    outbox.accepting = False  # backoff
    assert hub.send(heartbeat(2, 9)) == module.DROPPED and outbox.queued == 0
    outbox.accepting = True
    assert hub.send(heartbeat(2, 9)) == module.QUEUED
    assert outbox.discard() == 1 and outbox.queued == 0 and outbox.pending == []


def test_unknown_peers_and_a_stopped_hub_drop_and_bad_messages_raise(module):
    hub = hub_with_peers(module, 2)
    assert hub.send(heartbeat(9, 0)) == module.DROPPED
    hub.serving = False
    assert hub.send(heartbeat(2, 0)) == module.DROPPED
    with pytest.raises(MalformedMessageError):
        hub.send(Message(T.HUP, 1, 2))  # a local message type never travels
    with pytest.raises(MalformedMessageError):
        hub.send("not a message")


class Connection:
    """What an inbox hands back to tcp's _Inbound."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.partials: list[tuple[int, int, int]] = []
        self.user: list[bytes] = []

    def _fail(self, why: str) -> None:
        self.failures.append(why)

    def _partial(self, frames: int, left: int, size: int) -> None:
        self.partials.append((frames, left, size))

    def _on_user(self, body) -> None:
        self.user.append(bytes(body))


def inbox_of(module, member: int = 2):
    hub = module.Hub(1, TransportCounters(), 1 << 20)
    delivered: list[Message] = []
    hub.deliver, hub.serving = delivered.append, True
    connection = Connection()
    return module.Inbox(hub, connection, FrameDecoder(1 << 20), member), delivered, connection


def test_an_inbox_delivers_in_order_however_the_bytes_are_cut(module):
    messages = [Message(T.APPEND, 2, 1, term=2, index=n, log_term=2, commit=n,
                        entries=encode_entries(n + 1, 2, [b"x" * n])) for n in range(5)]
    data = b"".join(frame(m) for m in messages) + encode_frame(FRAME_USER, b"user")
    for step in (1, 7, 100, len(data)):
        inbox, delivered, connection = inbox_of(module)
        for at in range(0, len(data), step):
            inbox.receive(data[at:at + step])
        assert [(m.index, m.entries.tobytes()) for m in delivered] == \
            [(m.index, m.entries.tobytes()) for m in messages]
        assert connection.user == [b"user"] and connection.failures == []
        assert inbox.bytes_received == len(data) and inbox.hub.counters.received == 5
        # every chunk that ended inside a frame was reported, with the frames it completed
        assert all(left > 0 for _frames, left, _size in connection.partials)
        assert (step == len(data)) == (connection.partials == [])


def test_an_inbox_fails_its_connection_on_bad_input_and_drops_what_is_not_for_it(module):
    inbox, delivered, connection = inbox_of(module, member=2)
    inbox.receive(frame(Message(T.HEARTBEAT, 2, 5, term=1)))  # for member 5, not us (1)
    assert delivered == [] and inbox.hub.counters.dropped == 1 and connection.failures == []
    inbox.receive(frame(Message(T.HEARTBEAT, 3, 1, term=1)))  # member 3 on member 2's line
    assert connection.failures == ["message from member 3 on member 2's connection"]
    inbox, delivered, connection = inbox_of(module)
    good = frame(Message(T.HEARTBEAT, 2, 1, term=1))
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    inbox.receive(good)
    inbox.receive(good + bytes(corrupt))  # nothing of a chunk with a bad frame is delivered
    assert len(delivered) == 1 and connection.failures[0].startswith("bad frame:")
    inbox, delivered, connection = inbox_of(module)
    inbox.receive(encode_frame(7, b"?"))
    assert connection.failures == ["unexpected frame of type 7"]
    inbox, delivered, connection = inbox_of(module)
    body = bytearray(good[16:])
    body[0] = 99  # an unknown body version
    inbox.receive(encode_frame(1, bytes(body)))
    assert delivered == [] and connection.failures[0].startswith("malformed message:")
