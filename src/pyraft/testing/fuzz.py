"""Fuzz targets for the parsers that read bytes from disk or from the network.

Each ``fuzz_*`` function takes one ``bytes`` input (the atheris entry point; hypothesis drives
the same functions in ``tests/fuzz``) and checks a documented contract, raising
:class:`FuzzContractError` (an ``AssertionError``) when it does not hold. Any other exception
escaping a target is a crash as well: the contract is that bad input yields only the
documented typed errors.

Targets (``TARGETS``):

- ``frame``: ``raftcore.framing`` ``decode_entries`` / ``scan_entries`` and the streaming
  ``FrameDecoder``, compiled kernel and pure-Python twin side by side: only
  ``FramingError`` subclasses (``ValueError`` / ``OverflowError`` for arguments out of
  range), and both implementations agree on every result and every error (type and offset).
- ``wal``: a data directory with valid segments built from the input, then damaged (bytes
  written after the last record, overwritten anywhere, or the newest file cut short);
  ``raftcore.wal.WriteAheadLog`` recovers entries that are a prefix of what was written (all
  of them when only bytes after the records changed, unless those bytes form valid records
  themselves) or raises ``WalCorruptionError``.
- ``handshake``: ``pyraft.transport.codec`` decoders (HELLO / ACCEPT / REFUSE / Raft message
  bodies and whole frames) raise only ``MalformedMessageError``, and a decoded message
  encodes again; then the same bytes drive the accepting side of a ``TcpTransport``
  connection (HELLO check, then the message stream): nothing escapes ``data_received``, and
  every message it delivers is addressed to this member and comes from the member that said
  HELLO.
- ``http``: one request built from the input (method, path, query, the session headers,
  body) against the HTTP API (``pyraft.kv.http``) of a one-member in-process cluster over
  127.0.0.1: the status is one of the documented ones (never 500), every error answer has a
  JSON body ``{"error", "message"}``, and ``GET /v1/status`` still answers 200 afterwards.

Run one target coverage-guided with atheris (in its own process)::

    python -m pyraft.testing.fuzz frame --seconds 600 --corpus /tmp/corpus-frame \\
        --crashes /tmp/crashes

Crashing inputs land in ``--crashes`` (libFuzzer's ``crash-<sha1>`` files); replay one with
``python -m pyraft.testing.fuzz frame --replay FILE``. Each crash found becomes a file under
``tests/fuzz/regressions/<target>/`` that the default tests replay.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from pyraft.cluster import RaftCluster

__all__ = [
    "TARGETS",
    "FuzzContractError",
    "ByteReader",
    "fuzz_frame",
    "fuzz_wal",
    "fuzz_handshake",
    "fuzz_http",
    "HttpHarness",
    "main",
]


class FuzzContractError(AssertionError):
    """A fuzz target found its input violating the documented contract."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise FuzzContractError(what)


class ByteReader:
    """Consumes fuzz input as small integers and slices; past the end it yields zeros."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.byte() | (self.byte() << 8)

    def take(self, count: int) -> bytes:
        chunk = self.data[self.pos : self.pos + count]
        self.pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


# ---- frame decoder ---------------------------------------------------------------------------


def _outcome(function: Callable, *args, **kwargs):
    """``("ok", value)`` or ``("error", type, offset)`` for a typed error; others propagate."""
    from raftcore.errors import FramingError

    try:
        return ("ok", function(*args, **kwargs))
    except FramingError as exc:
        return ("error", type(exc).__name__, exc.offset)
    except (OverflowError, ValueError) as exc:  # arguments out of range (documented)
        if isinstance(exc, FramingError):  # pragma: no cover - caught above
            raise
        return ("error", type(exc).__name__, None)


def _batch_key(batch) -> tuple:
    return (
        batch.first_index, batch.nbytes, [int(t) for t in batch.terms],
        [int(k) for k in batch.kinds], [int(o) for o in batch.offsets], batch.tobytes(),
    )


def fuzz_frame(data: bytes) -> None:
    """Entry records and transport frames, compiled kernel against its Python twin."""
    from raftcore import _framing, _framing_py

    reader = ByteReader(data)
    mode = reader.byte()
    first = reader.u16() if mode % 6 == 3 else (0, 1, 2, 0, 2**64 - 1, 2**64)[mode % 6]
    payload_max = (1 << 20, 0, 16, 4096)[(mode >> 3) % 4]
    prev_term = reader.byte() % 4
    body = reader.rest()
    if mode & 0x40:  # start from valid records, then damage a few bytes: reaches deeper
        body = _valid_records(_framing, body)
    results = []
    for impl in (_framing, _framing_py):
        decoded = _outcome(impl.decode_entries, body, first, payload_bytes_max=payload_max,
                           prev_term=prev_term)
        scanned = _outcome(impl.scan_entries, body, first, payload_bytes_max=payload_max,
                           prev_term=prev_term)
        if decoded[0] == "ok":
            decoded = ("ok", _batch_key(decoded[1]))
        if scanned[0] == "ok":
            batch, end, error = scanned[1]
            _check(end == batch.nbytes and end <= len(body), f"scan end {end} out of range")
            _check(error is None or isinstance(error, ValueError), f"scan error {error!r}")
            scanned = ("ok", _batch_key(batch), end,
                       None if error is None else (type(error).__name__, error.offset))
        results.append((decoded, scanned))
    _check(results[0] == results[1], f"compiled and Python framing disagree: {results}")
    _fuzz_frame_stream(data)


def _valid_records(framing, body: bytes) -> bytes:
    reader = ByteReader(body)
    count = reader.byte() % 6
    payloads = [reader.take(reader.byte() % 40) for _ in range(count)]
    if not payloads:
        return body
    records = bytearray(framing.encode_entries(1, 1 + reader.byte() % 3, payloads).tobytes())
    for _ in range(reader.byte() % 3):  # damage: (position, xor mask)
        position = reader.u16() % len(records)
        records[position] ^= reader.byte() or 1
    return bytes(records) + reader.rest()


def _fuzz_frame_stream(data: bytes) -> None:
    from raftcore import _framing, _framing_py
    from raftcore.errors import FramingError

    reader = ByteReader(data)
    frame_max = (16, 64, 4096, 1 << 20)[reader.byte() % 4]
    stream = bytearray()
    while reader.left:  # a mix of valid frames and raw bytes
        tag = reader.byte()
        chunk = reader.take(tag % 48)
        stream += _framing.encode_frame(reader.byte(), chunk) if tag & 0x80 else chunk
    cuts = sorted({b % (len(stream) + 1) for b in data[:8]})
    pieces = [bytes(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    outcomes = []
    for impl in (_framing, _framing_py):
        decoder = impl.FrameDecoder(frame_max)
        frames: list = []
        error = None
        for piece in pieces:
            try:
                frames += [(t, bytes(b)) for t, b in decoder.feed(piece)]
            except FramingError as exc:
                error = (type(exc).__name__, exc.offset)
                break
        for _frame_type, body in frames:
            _check(len(body) <= frame_max, "a frame body over frame_bytes_max was returned")
        outcomes.append((frames, error, None if error else decoder.buffered))
    _check(outcomes[0] == outcomes[1], f"compiled and Python FrameDecoder disagree: {outcomes}")
    # what the decoder returned is what was framed: re-encoding gives a prefix of the stream
    frames = outcomes[0][0]
    encoded = b"".join(_framing.encode_frame(t, b) for t, b in frames)
    _check(bytes(stream).startswith(encoded), "decoded frames are not a prefix of the stream")


# ---- WAL recovery ----------------------------------------------------------------------------

_WAL_ROOT: list[str] = []
#: scratch directory handed by ``main`` to the fuzzing child (libFuzzer exits without atexit)
_TMP_VARIABLE = "PYRAFT_FUZZ_TMP"


def _wal_directory() -> str:
    if not _WAL_ROOT and os.environ.get(_TMP_VARIABLE):  # set by main() for its child
        _WAL_ROOT.append(os.environ[_TMP_VARIABLE])
    if not _WAL_ROOT:
        root = tempfile.mkdtemp(prefix="pyraft-fuzz-wal-")
        _WAL_ROOT.append(root)
        atexit.register(shutil.rmtree, root, True)
    path = os.path.join(_WAL_ROOT[0], "log")
    shutil.rmtree(path, ignore_errors=True)
    return path


def fuzz_wal(data: bytes) -> None:
    """Recovery of a damaged WAL directory: a prefix of what was written, or a typed error."""
    from raftcore.errors import WalCorruptionError
    from raftcore.framing import encode_entries
    from raftcore.wal import SEGMENT_HEADER_BYTES, WriteAheadLog

    reader = ByteReader(data)
    count = 1 + reader.byte() % 12
    mode = reader.byte() % 3
    payloads = [reader.take(reader.byte() % 24) for _ in range(count)]
    terms = sorted(1 + reader.byte() % 3 for _ in range(count))
    segment_bytes_max = SEGMENT_HEADER_BYTES + 32 + 64 + reader.byte() * 2
    directory = _wal_directory()
    wal = WriteAheadLog(directory, cluster_id=7, segment_bytes_max=segment_bytes_max,
                        sync="never")
    try:
        for i, payload in enumerate(payloads):
            wal.append(encode_entries(i + 1, terms[i], [payload]))
    finally:
        wal.close()
    names = sorted(n for n in os.listdir(directory) if n.endswith(".wal"))
    _check(bool(names), "no segment written")
    newest = os.path.join(directory, names[-1])
    size = os.path.getsize(newest)
    end = _records_end(newest)
    damage = reader.rest()
    with open(newest, "r+b") as f:
        if mode == 0:  # bytes after the last record only
            f.seek(end)
            f.write(damage[: max(0, size - end)] if size > end else damage)
        elif mode == 1:  # overwrite anywhere in one file
            target = os.path.join(directory, names[(damage[:1] or b"\0")[0] % len(names)])
            with open(target, "r+b") as g:
                length = os.path.getsize(target)
                position = int.from_bytes(damage[1:3] or b"\0", "little") % max(1, length)
                g.seek(position)
                g.write(damage[3:])
        else:  # the newest file cut short
            cut = int.from_bytes(damage[:2] or b"\0", "little") % (size + 1)
            f.truncate(cut)
    try:
        recovered = WriteAheadLog(directory, cluster_id=7, segment_bytes_max=segment_bytes_max,
                                  sync="never")
    except WalCorruptionError:
        return
    try:
        last = recovered.last_index()
        first = recovered.first_index()
        _check(first == 1, f"first index {first} after recovery")
        common = min(last, count)
        if common:
            batch = recovered.read(1, common + 1)
            got = [bytes(p) for p in batch.payloads()]
            _check(got == payloads[:common],
                   f"recovered entries 1..{common} differ from what was written")
            _check([int(t) for t in batch.terms] == terms[:common], "recovered terms differ")
        if mode == 0:
            _check(last >= count, f"only {last} of {count} entries recovered after tail damage")
        _check(last <= count or mode in (0, 1),
               f"{last} entries recovered, {count} written, no bytes added")
    finally:
        recovered.close()


def _records_end(path: str) -> int:
    """Offset just past the last valid record of a segment file (scanned independently)."""
    from raftcore.framing import scan_entries
    from raftcore.wal import SEGMENT_HEADER_BYTES

    with open(path, "rb") as f:
        content = f.read()
    _batch, end, _error = scan_entries(content[SEGMENT_HEADER_BYTES:])
    return SEGMENT_HEADER_BYTES + end


# ---- transport handshake and codec -----------------------------------------------------------


class _FakeSocketTransport(asyncio.Transport):
    """Enough of an asyncio transport for one protocol object driven by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 9) if name == "peername" else default

    def write(self, data) -> None:
        self.written += data

    def writelines(self, parts) -> None:
        for part in parts:
            self.written += part

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass


_HANDSHAKE_LOOP: list[asyncio.AbstractEventLoop] = []


def _handshake_loop() -> asyncio.AbstractEventLoop:
    if not _HANDSHAKE_LOOP:
        loop = asyncio.new_event_loop()
        _HANDSHAKE_LOOP.append(loop)
        atexit.register(loop.close)
    return _HANDSHAKE_LOOP[0]


def fuzz_handshake(data: bytes) -> None:
    """Codec decoders and the accepting side of a TCP connection fed with the input."""
    from pyraft.transport import codec

    reader = ByteReader(data)
    mode = reader.byte()
    rest = reader.rest()
    from pyraft.core.messages import Message

    for decode in (codec.decode_hello, codec.decode_refuse, codec.decode_body,
                   codec.decode_message):
        try:
            value = decode(rest)
        except codec.MalformedMessageError:
            continue
        if isinstance(value, Message):  # decode_body and decode_message give one
            again = codec.decode_message(b"".join(bytes(p) for p in codec.encode_message(value)))
            _check(_message_key(again) == _message_key(value),
                   "a decoded message does not survive encoding again")
    _fuzz_inbound(mode, rest)


def _message_key(message) -> tuple:
    entries = None if message.entries is None else (message.entries.first_index,
                                                    message.entries.tobytes())
    return (message.type, message.src, message.dst, message.term, message.log_term,
            message.index, message.commit, entries, message.reject, message.reject_hint,
            message.hint_term, message.context, message.snapshot, message.transfer,
            message.snapshot_offset, message.snapshot_done, message.fresh)


def _fuzz_inbound(mode: int, rest: bytes) -> None:
    from pyraft.transport import codec, tcp
    from raftcore.framing import encode_frame

    own, peer = 2, 3
    stream = bytearray()
    if mode & 1:  # a valid HELLO first, so that the message stream is reached
        hello = codec.Hello(codec.PROTOCOL_VERSION, 5, peer, own if mode & 2 else 0)
        stream += codec.encode_hello(hello)
    if mode & 4:  # the rest as frame bodies of fuzzed types, with valid frame checksums
        reader = ByteReader(rest)
        while reader.left:
            tag = reader.byte()
            stream += encode_frame((1, 5, 2, 3, 4, tag)[tag % 6], reader.take(reader.u16() % 512))
    else:
        stream += rest
    delivered: list = []
    users: list = []
    transport = tcp.TcpTransport(own, "127.0.0.1:0", cluster_id=5, frame_bytes_max=1 << 16)
    transport._loop = _handshake_loop()
    transport._deliver = delivered.append
    transport.on_user_message = lambda member, body: users.append(member)
    connection = tcp._Inbound(transport)
    fake = _FakeSocketTransport()
    connection.connection_made(fake)
    try:
        step = 1 + (mode >> 4)
        pieces = [bytes(stream[i : i + step]) for i in range(0, len(stream), step)]
        if mode & 9 == 9:  # HELLO alone first, as a peer waiting for ACCEPT sends it
            size = len(codec.encode_hello(codec.Hello(1, 0, 0)))
            pieces = [bytes(stream[:size])] + [
                bytes(stream[i : i + step]) for i in range(size, len(stream), step)]
        for piece in pieces:
            if fake.closing:
                break
            connection.data_received(piece)
        if not fake.closing:
            connection.eof_received()
    finally:
        connection.connection_lost(None)
    for message in delivered:
        _check(message.dst == own, f"delivered a message for member {message.dst}")
        _check(message.src == connection.member == peer,
               f"delivered a message from {message.src} on member {connection.member}'s link")
    _check(all(member == peer for member in users), "a user message from the wrong member")
    _check(transport._connections == set(), "a connection stayed registered after it closed")


# ---- HTTP API --------------------------------------------------------------------------------

#: statuses documented by ``pyraft.kv.http`` (405: a known path with another method)
HTTP_STATUSES = frozenset({200, 204, 307, 400, 404, 405, 409, 410, 413, 503, 504})
_METHODS = ("GET", "PUT", "DELETE", "POST", "HEAD", "PATCH", "OPTIONS")
_PATHS = ("/v1/kv/{key}", "/v1/kv/{key}/cas", "/v1/sessions", "/v1/status", "/v1/members",
          "/v1/members/{key}", "/{key}", "/v1/kv/{key}/{key}")
_CONSISTENCY = ("barrier", "lease", "local", "")


class HttpHarness:
    """A one-member in-process cluster serving the KV HTTP API on 127.0.0.1.

    Runs on its own event loop, driven by :meth:`request` (``run_until_complete``), so a
    synchronous fuzz target can use it; :meth:`close` stops everything and closes the loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.errors: list = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.cluster: RaftCluster | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        try:
            self.loop.run_until_complete(asyncio.wait_for(self._start(), 30))
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        from pyraft.cluster import RaftCluster
        from pyraft.config import ClusterConfig
        from pyraft.kv import KVStateMachine
        from pyraft.kv.http import bound_port, serve
        from pyraft.transport.memory import MemoryNetwork

        network = MemoryNetwork()
        machine = KVStateMachine()
        self.cluster = cluster = RaftCluster(
            ClusterConfig(member_id=1, tick_ms=5, peers={1: "127.0.0.1:1"}),
            transport=network.transport(1), state_machine=machine)
        await cluster.start()
        for _ in range(1000):  # a one-member cluster elects itself within a few timeouts
            if cluster.is_leader:
                break
            await asyncio.sleep(0.01)
        self.runner = runner = await serve(cluster, machine, "127.0.0.1", 0,
                                           request_timeout_s=0.5, value_bytes_max=256)
        self.port = bound_port(runner)

    async def _exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(1 << 20), 5)
            while True:
                more = await asyncio.wait_for(reader.read(1 << 20), 5)
                if not more:
                    break
                answer += more
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        _check(len(parts) >= 2 and parts[1].isdigit(), f"no HTTP status line: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers, body

    def request(self, raw: bytes, *, json_errors: bool = True) -> int:
        """Send one raw HTTP/1.1 request; check the answer; returns its status."""
        status, headers, body = self.loop.run_until_complete(self._exchange(raw))
        _check(status != 500 and (status in HTTP_STATUSES or not json_errors),
               f"status {status} for {raw[:200]!r}: {body[:200]!r}")
        if status >= 300 and json_errors and not raw.startswith(b"HEAD "):
            _check(headers.get("content-type", "").startswith("application/json"),
                   f"error {status} without a JSON body for {raw[:200]!r}")
            document = json.loads(body)
            _check(isinstance(document, dict) and isinstance(document.get("error"), str)
                   and isinstance(document.get("message"), str),
                   f"error body {body[:200]!r} is not {{error, message}}")
        return status

    def check_alive(self) -> None:
        status = self.request(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _check(status == 200, f"GET /v1/status answered {status} after a fuzzed request")
        _check(not self.errors, f"unhandled loop errors: {self.errors}")

    def close(self) -> None:
        async def stop() -> None:
            if self.runner is not None:
                await self.runner.cleanup()
            if self.cluster is not None:
                await self.cluster.stop()

        try:
            if not self.loop.is_closed():
                self.loop.run_until_complete(asyncio.wait_for(stop(), 30))
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


def build_http_request(data: bytes) -> tuple[bytes, bool]:
    """A syntactically valid HTTP/1.1 request from fuzz input, or (mode bit) raw bytes.

    Returns ``(request, structured)``: error answers to structured requests must be JSON;
    raw ones only must not be 500 (aiohttp's own parser answers malformed requests).
    """
    reader = ByteReader(data)
    mode = reader.byte()
    if mode == 0xFF:  # raw bytes after a plausible request line
        return b"GET /v1/kv/a HTTP/1.1\r\n" + reader.rest() + b"\r\n\r\n", False
    method = _METHODS[reader.byte() % len(_METHODS)]
    key = urllib.parse.quote(reader.take(reader.byte() % 12), safe="")
    path = _PATHS[reader.byte() % len(_PATHS)].replace("{key}", key or "k")
    if path.startswith("/v1/members") and method in ("POST", "DELETE"):
        method = "GET"  # configuration changes would end the one-member harness
    query = {}
    if mode & 1:
        query["consistency"] = (_CONSISTENCY[reader.byte() % 4]
                                or reader.take(reader.byte() % 8).decode("latin-1"))
    headers = ["Host: 127.0.0.1", "Connection: close"]
    if mode & 2:
        headers.append("X-Client-Id: " + _header_text(reader))
    if mode & 4:
        headers.append("X-Request-Seq: " + _header_text(reader))
    if mode & 8:
        body = json.dumps({"expected": _text(reader), "new": _text(reader),
                           **({"encoding": _text(reader)} if mode & 16 else {})}).encode()
    else:
        body = reader.take(reader.u16() % 600)
    headers.append(f"Content-Length: {len(body)}")
    target = path + ("?" + urllib.parse.urlencode(query) if query else "")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode("utf-8") + body, True


def _header_text(reader: ByteReader) -> str:
    """A header value: small or huge integers, odd spellings of them, or printable bytes."""
    choice = reader.byte()
    if choice < 64:
        return str((choice % 4) - 1)
    if choice < 128:
        return str(reader.u16())
    if choice < 160:  # around the 64-bit limit, or a power of ten
        base = (2**64, 2**63)[choice % 2] if choice % 3 else 10 ** (reader.byte() % 40)
        return str(base + (reader.byte() % 5) - 2)
    if choice < 176:  # spellings int() accepts that are not plain decimal digits
        return ("1_0", " +1", "\u0661", "0x1", "1e3", "\uff11")[choice % 6]
    raw = reader.take(choice % 24)
    return "".join(chr(b) for b in raw if 0x20 <= b < 0x7F or b == 0x09).strip()


def _text(reader: ByteReader) -> str | None:
    choice = reader.byte()
    if choice % 5 == 0:
        return None
    return reader.take(choice % 16).decode("utf-8", errors="replace")


_HTTP: list[HttpHarness] = []


def fuzz_http(data: bytes, harness: HttpHarness | None = None) -> None:
    """One fuzzed request against the HTTP API; the member must answer and keep working."""
    if harness is None:
        if not _HTTP:
            _HTTP.append(HttpHarness())
            atexit.register(_HTTP[0].close)
        harness = _HTTP[0]
    request, structured = build_http_request(data)
    harness.request(request, json_errors=structured)
    harness.check_alive()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frame": fuzz_frame,
    "wal": fuzz_wal,
    "handshake": fuzz_handshake,
    "http": fuzz_http,
}


# ---- command line ----------------------------------------------------------------------------


def _instrument(atheris, prefixes: tuple[str, ...]) -> int:
    """Add coverage instrumentation to every loaded Python function of modules whose name
    starts with one of ``prefixes``; returns how many functions were instrumented."""
    import gc
    import types

    count = 0
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        module = getattr(obj, "__module__", None) or ""
        if module.split(".")[0] not in prefixes:
            continue
        try:
            atheris.instrument_func(obj)
            count += 1
        except Exception as exc:  # noqa: BLE001 - a function atheris cannot patch
            print(f"INFO: not instrumented {obj.__qualname__}: {exc}", file=sys.stderr)
    print(f"INFO: instrumented {count} functions of {', '.join(prefixes)}", file=sys.stderr)
    return count


def _run_child(argv: list[str]) -> int:
    """Fuzz in a child process (libFuzzer ends its process without cleaning up) with a
    scratch directory this process removes afterwards; returns the child's exit status."""
    import subprocess

    shm = "/dev/shm"  # tmpfs when there is one: a WAL segment created is a directory fsync
    scratch = tempfile.mkdtemp(prefix="pyraft-fuzz-", dir=shm if os.path.isdir(shm)
                               and os.access(shm, os.W_OK) else None)
    try:
        return subprocess.call([sys.executable, "-m", "pyraft.testing.fuzz", *argv],
                               env={**os.environ, _TMP_VARIABLE: scratch})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyraft.testing.fuzz",
        description="Run one fuzz target coverage-guided with atheris (libFuzzer).",
    )
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    parser.add_argument("--corpus", help="corpus directory (read and extended)")
    parser.add_argument("--crashes", default=".", help="directory for crashing inputs")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    parser.add_argument("--replay", nargs="+", metavar="FILE",
                        help="run the target once on each FILE instead of fuzzing")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 7 * 86400:
        parser.error("--seconds must be in (0, 604800]")
    target = TARGETS[args.target]
    if args.replay:
        for path in args.replay:
            with open(path, "rb") as f:
                target(f.read())
            print(f"{path}: ok")
        return 0
    if not os.environ.get(_TMP_VARIABLE):
        return _run_child(argv if argv is not None else sys.argv[1:])
    import atheris  # type: ignore[import-untyped]

    os.makedirs(args.crashes, exist_ok=True)
    libfuzzer = [sys.argv[0], f"-max_total_time={max(1, int(round(args.seconds)))}",
                 f"-artifact_prefix={os.path.join(os.path.abspath(args.crashes), '')}",
                 "-timeout=30", "-rss_limit_mb=2048", f"-seed={args.seed}",
                 "-print_final_stats=1"]
    if args.corpus:
        os.makedirs(args.corpus, exist_ok=True)
        libfuzzer.append(args.corpus)
    # load what the target exercises, then instrument the project's Python code (all of it:
    # instrument_all() would take minutes over numpy, aiohttp, ...)
    target(b"")
    _instrument(atheris, ("pyraft", "raftcore", "__main__"))
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz exits the process


if __name__ == "__main__":
    sys.exit(main())

