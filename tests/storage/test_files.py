"""Atomic replacement, the checked container and the OSError mapping of pyraft.storage.files."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyraft.errors import CorruptStateError, InvariantError, StorageError, StorageFullError
from pyraft.storage import files
from pyraft.storage.files import (
    CHECKED_HEADER_BYTES,
    atomic_write,
    fsync_directory,
    pack_checked,
    read_checked,
    remove_temp_files,
    storage_error,
    translate_os_errors,
    unpack_checked,
)


def temp_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(files.TEMP_SUFFIX))


def fail_with(code: int):
    def raiser(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return raiser


# -- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_maps_to_storage_full_error(code):
    error = storage_error(OSError(code, os.strerror(code)), "cannot write", "/x/y")
    assert type(error) is StorageFullError
    assert error.errno == code and error.path == "/x/y"
    assert "cannot write" in str(error) and "/x/y" in str(error)


def test_other_os_errors_map_to_storage_error():
    error = storage_error(OSError(errno.EIO, "I/O error"), "cannot read", "/x/y")
    assert type(error) is StorageError
    assert error.errno == errno.EIO and error.path == "/x/y"


def test_storage_errors_pass_through_unchanged():
    original = StorageFullError("full", path="/a", errno=errno.ENOSPC)
    assert storage_error(original, "other", "/b") is original
    with pytest.raises(StorageFullError) as caught, translate_os_errors("other", "/b"):
        raise original
    assert caught.value is original


def test_translate_keeps_the_cause():
    with pytest.raises(StorageError) as caught, translate_os_errors("cannot open", "/p"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert caught.value.errno == errno.ENOENT
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_fsync_directory_of_a_missing_directory(tmp_path):
    with pytest.raises(StorageError) as caught:
        fsync_directory(tmp_path / "missing")
    assert caught.value.errno == errno.ENOENT
    assert caught.value.path == str(tmp_path / "missing")


# -- atomic_write ---------------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write(str(path), bytearray(b"two, longer"))
    assert path.read_bytes() == b"two, longer"
    atomic_write(path, memoryview(b"3"))
    assert path.read_bytes() == b"3"
    assert temp_files(tmp_path) == []


def test_ensure_directory_creates_missing_parents(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert files.ensure_directory(target) == str(target)
    assert target.is_dir()
    assert files.ensure_directory(target) == str(target)  # already there
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(StorageError) as caught:
        files.ensure_directory(tmp_path / "plain")
    assert caught.value.errno == errno.EEXIST


def test_atomic_write_handles_short_writes(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:3])))
    atomic_write(tmp_path / "f", b"0123456789")
    assert (tmp_path / "f").read_bytes() == b"0123456789"


@pytest.mark.parametrize("call", ["write", "fsync", "replace", "open"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_atomic_write_failure_keeps_old_content(tmp_path, monkeypatch, call, code):
    path = tmp_path / "f"
    atomic_write(path, b"old")
    monkeypatch.setattr(os, call, fail_with(code))
    with pytest.raises(StorageError) as caught:
        atomic_write(path, b"new content")
    monkeypatch.undo()
    expected = StorageFullError if code == errno.ENOSPC else StorageError
    assert type(caught.value) is expected
    assert caught.value.errno == code
    assert caught.value.path == str(path)
    assert path.read_bytes() == b"old"
    assert temp_files(tmp_path) == []


def test_crash_before_rename_leaves_old_content_and_a_removable_temp(tmp_path, monkeypatch):
    path = tmp_path / "f"
    atomic_write(path, b"old")

    class Crash(BaseException):
        pass

    def crash(*args):
        raise Crash

    # A crash right before the rename; the cleanup of the failing write is also skipped, as a
    # real crash would skip it.
    monkeypatch.setattr(os, "replace", crash)
    monkeypatch.setattr(files, "_remove_quietly", lambda path: None)
    with pytest.raises(Crash):
        atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    leftovers = temp_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith("f.")
    (tmp_path / "other.tmp").write_bytes(b"not ours")
    assert remove_temp_files(tmp_path, "f.") == leftovers
    assert temp_files(tmp_path) == ["other.tmp"]
    assert path.read_bytes() == b"old"


# -- checked container ----------------------------------------------------------------------------


@given(kind=st.binary(min_size=4, max_size=4), payload=st.binary(max_size=300))
def test_checked_round_trip(kind, payload):
    packed = pack_checked(kind, payload)
    assert len(packed) == CHECKED_HEADER_BYTES + len(payload)
    assert unpack_checked("p", packed, kind) == payload
    assert unpack_checked("p", memoryview(packed), kind) == payload


def test_checked_file_round_trip(tmp_path):
    path = tmp_path / "c"
    assert read_checked(path, b"TEST") is None
    atomic_write(path, pack_checked(b"TEST", b"payload"))
    assert read_checked(path, b"TEST") == b"payload"


def test_kind_must_be_four_bytes():
    with pytest.raises(InvariantError):
        pack_checked(b"ABC", b"")
    with pytest.raises(InvariantError):
        unpack_checked("p", pack_checked(b"ABCD", b""), b"ABCDE")


def test_every_bit_flip_is_detected():
    packed = pack_checked(b"TEST", b"a small payload \x00\xff")
    for position in range(len(packed)):
        for bit in range(8):
            damaged = bytearray(packed)
            damaged[position] ^= 1 << bit
            with pytest.raises(CorruptStateError) as caught:
                unpack_checked("/d/file", damaged, b"TEST")
            assert caught.value.path == "/d/file"
            assert "/d/file" in str(caught.value)
            assert caught.value.offset is not None


def test_every_truncation_and_extension_is_detected():
    packed = pack_checked(b"TEST", b"payload bytes")
    for length in range(len(packed)):
        with pytest.raises(CorruptStateError) as caught:
            unpack_checked("f", packed[:length], b"TEST")
        assert caught.value.offset is not None
    with pytest.raises(CorruptStateError, match="trailing"):
        unpack_checked("f", packed + b"\x00", b"TEST")


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(0, b"X", "magic"), (4, b"X", "kind"), (8, b"\x00\x09", "version"), (14, b"\x00", "checksum")],
)
def test_each_defect_is_named(offset, value, message):
    packed = bytearray(pack_checked(b"TEST", b"payload"))
    packed[offset : offset + len(value)] = value
    with pytest.raises(CorruptStateError, match=message) as caught:
        unpack_checked("f", packed, b"TEST")
    assert caught.value.offset == offset


def test_wrong_kind_is_corrupt():
    with pytest.raises(CorruptStateError, match="kind"):
        unpack_checked("f", pack_checked(b"AAAA", b"x"), b"BBBB")


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as handle:
        handle.truncate(CHECKED_HEADER_BYTES + files.CHECKED_PAYLOAD_BYTES_MAX + 1)
    with pytest.raises(CorruptStateError) as caught:
        read_checked(path, b"TEST")
    assert caught.value.path == str(path)


def test_read_errors_are_storage_errors(tmp_path, monkeypatch):
    path = tmp_path / "c"
    atomic_write(path, pack_checked(b"TEST", b"x"))
    monkeypatch.setattr(os, "read", fail_with(errno.EIO))
    with pytest.raises(StorageError) as caught:
        read_checked(path, b"TEST")
    assert caught.value.errno == errno.EIO and caught.value.path == str(path)


def test_background_deleter_renames_first_then_deletes_in_order(tmp_path, monkeypatch):
    from pyraft.storage.files import BackgroundDeleter

    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.wal"
        path.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes: shrunk in 3 steps
        paths.append(str(path))
    events = []
    real_rename, real_truncate, real_unlink = os.rename, os.truncate, os.unlink
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", a)),
                                                    real_rename(a, b)))
    monkeypatch.setattr(os, "truncate", lambda p, n: (events.append(("truncate", p, n)),
                                                      real_truncate(p, n)))
    monkeypatch.setattr(os, "unlink", lambda p: (events.append(("unlink", p)), real_unlink(p)))
    deleter = BackgroundDeleter(step_bytes=4096, pause_s=0.001)
    for path in paths:
        deleter.delete(path)
    deleter.delete(str(tmp_path / "gone.wal"))  # already gone: skipped quietly
    deleter.wait()  # every file has left its name
    assert not any(os.path.exists(p) for p in paths)
    deleter.close()  # and is deleted once closed
    assert os.listdir(tmp_path) == [] and deleter.deleted == 4
    for path in paths:  # per file: renamed, shrunk 4 KiB at a time, unlinked
        mine = [e for e in events if e[1].startswith(path)]
        assert mine == [("rename", path), ("truncate", path + ".released", 6144),
                        ("truncate", path + ".released", 2048), ("unlink", path + ".released")]
    renames = [e[1] for e in events if e[0] == "rename"]
    assert renames == [*paths, str(tmp_path / "gone.wal")]  # in the order handed over
    assert not deleter._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        deleter.delete(paths[0])
    with pytest.raises(ValueError):
        BackgroundDeleter(step_bytes=0)
