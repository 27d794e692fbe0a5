"""Frames of the binary client protocol (:mod:`pyraft.kv.wire`), shared by the server and
:class:`pyraft.kv.KVClient`: a frame is a 4-byte big-endian length, then that many bytes of
one msgpack value. No I/O here."""

from __future__ import annotations

import struct
import threading

import msgpack

from pyraft.errors import FrameError

__all__ = ["CAS", "DELETE", "FRAME_BYTES_MAX_DEFAULT", "GET", "KEY_BYTES_MAX", "OPEN_SESSION",
           "PUT", "REQUESTS_IN_FLIGHT_MAX", "STATUS", "FrameError", "FrameReader", "frame", "pack"]

GET, PUT, DELETE, CAS, OPEN_SESSION, STATUS = 1, 2, 3, 4, 5, 6
#: the longest key accepted
KEY_BYTES_MAX = 8192
#: the largest frame accepted by default (a value of ``value_bytes_max`` and its envelope)
FRAME_BYTES_MAX_DEFAULT = 1024 * 1024 + 64 * 1024
#: unanswered requests of one connection beyond which the server stops reading it
REQUESTS_IN_FLIGHT_MAX = 4096
_LENGTH_BYTES = 4
_read_length = struct.Struct(">I").unpack_from


_packers = threading.local()


def pack(message: object) -> bytes:
    """``message`` as msgpack bytes (``msgpack.packb``'s, through one packer per thread:
    ``packb`` builds a packer per call, half of its cost for a request's few fields)."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer().pack
    return packer(message)


def frame(message: object) -> bytes:
    """``message`` as one frame: its msgpack bytes behind their 4-byte big-endian length."""
    body = pack(message)
    return len(body).to_bytes(_LENGTH_BYTES, "big") + body


class FrameReader:
    """Splits a byte stream into frame bodies (``bytes``), at most ``frame_bytes_max`` each.

    ``feed(data)`` returns the bodies completed by ``data``; the bytes of an incomplete frame
    wait for the next call. A length over the limit raises :class:`FrameError`."""

    def __init__(self, frame_bytes_max: int) -> None:
        if frame_bytes_max < 1:
            raise ValueError(f"frame_bytes_max must be >= 1, not {frame_bytes_max}")
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not complete a frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        # the common case, a read of whole frames, is cut from ``data`` itself: no copy of
        # it into the buffer, one copy per body
        whole = not buffer and type(data) is bytes
        if whole:
            stream: bytes | bytearray = data
        else:
            buffer += data
            stream = buffer
        bodies: list[bytes] = []
        offset, size = 0, len(stream)
        limit = self.frame_bytes_max
        while size - offset >= _LENGTH_BYTES:
            length = _read_length(stream, offset)[0]
            if length > limit:
                self._keep(stream, offset, whole)
                raise FrameError(f"a frame of {length} bytes exceeds the limit of {limit} "
                                 "bytes", offset)
            end = offset + _LENGTH_BYTES + length
            if end > size:
                break
            bodies.append(data[offset + _LENGTH_BYTES:end] if whole
                          else bytes(buffer[offset + _LENGTH_BYTES:end]))
            offset = end
        self._keep(stream, offset, whole)
        return bodies

    def _keep(self, stream: bytes | bytearray, offset: int, whole: bool) -> None:
        """Keep the bytes of ``stream`` from ``offset`` on for the next call."""
        if whole:
            if offset < len(stream):
                self._buffer += stream[offset:]
        elif offset:
            del self._buffer[:offset]
