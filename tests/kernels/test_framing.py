"""Framing kernel: entry batches and transport frames, against an independent encoder.

The independent encoder below is written from docs/format.md with `struct` and the `crc32c`
package, so a shared misunderstanding between the kernel and its twin cannot hide.
"""

from __future__ import annotations

import pickle
import struct

import crc32c as reference
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import raftcore.framing
from raftcore import (
    CorruptFrameError,
    CorruptRecordError,
    FramingError,
    OversizedFrameError,
    OversizedRecordError,
    TruncatedRecordError,
)
from raftcore._select import USE_TWINS

from ._impls import implementation_id, implementations


@pytest.fixture(params=implementations("framing"), ids=implementation_id)
def fr(request):
    return request.param


def spec_record(index, term, kind, payload, *, version=1, flags=0, fix_crc=True):
    """One record exactly as docs/format.md describes it."""
    rest = struct.pack("<IIBBHQQ", reference.crc32c(payload), len(payload), kind, version, flags,
                       term, index)
    header_crc = reference.crc32c(rest) if fix_crc else 0
    return struct.pack("<I", header_crc) + rest + payload


def spec_frame(message_type, body):
    rest = struct.pack("<IIHBB", reference.crc32c(body), len(body), 0x5246, 1, message_type)
    return struct.pack("<I", reference.crc32c(rest)) + rest + body


@st.composite
def batches(draw, max_entries=40):
    n = draw(st.integers(0, max_entries))
    first = draw(st.integers(1, 2**40))
    steps = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    start = draw(st.integers(1, 1000))
    terms = list(np.cumsum([start] + steps[1:])) if n else []
    kinds = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=n, max_size=n))
    payloads = draw(st.lists(st.binary(max_size=64), min_size=n, max_size=n))
    return first, [int(t) for t in terms], kinds, payloads


@given(batches())
def test_encode_matches_the_spec_and_round_trips(case):
    first, terms, kinds, payloads = case
    spec = b"".join(spec_record(first + i, t, k, p)
                    for i, (t, k, p) in enumerate(zip(terms, kinds, payloads)))
    for fr in implementations("framing"):
        batch = fr.encode_entries(first, terms, payloads, kinds)
        assert batch.tobytes() == spec
        decoded = fr.decode_entries(spec, first if payloads else 0)
        assert len(decoded) == len(payloads)
        if payloads:
            assert decoded.first_index == first
            assert decoded.last_index == first + len(payloads) - 1
            assert decoded.last_term == terms[-1]
        assert decoded.terms.tolist() == terms
        assert decoded.kinds.tolist() == kinds
        assert [bytes(p) for p in decoded.payloads()] == payloads
        assert [(i, t, k, bytes(p)) for i, t, k, p in decoded] == [
            (first + i, t, k, p) for i, (t, k, p) in enumerate(zip(terms, kinds, payloads))
        ]
        assert decoded.offsets.tolist() == batch.offsets.tolist()
        assert decoded.offsets[-1] == decoded.nbytes == len(spec)
        assert decoded.config_positions.tolist() == [i for i, k in enumerate(kinds) if k == 1]


def small_batch(fr):
    return fr.encode_entries(7, [2, 2, 3], [b"alpha", b"", b"gamma-gamma"], [0, 2, 1])


def test_every_single_bit_flip_is_detected_as_corruption(fr):
    batch = small_batch(fr)
    data = batch.tobytes()
    starts = batch.offsets.tolist()
    for byte in range(len(data)):
        record_start = max(s for s in starts[:-1] if s <= byte)
        for bit in range(8):
            damaged = bytearray(data)
            damaged[byte] ^= 1 << bit
            with pytest.raises(CorruptRecordError) as info:
                fr.decode_entries(bytes(damaged))
            assert info.value.offset == record_start, (byte, bit)


def test_every_truncation_is_typed_at_the_right_offset(fr):
    batch = small_batch(fr)
    data = batch.tobytes()
    starts = batch.offsets.tolist()
    for cut in range(len(data)):
        prefix = data[:cut]
        if cut in starts:
            assert len(fr.decode_entries(prefix)) == starts.index(cut)
            continue
        record_start = max(s for s in starts if s <= cut)
        with pytest.raises(TruncatedRecordError) as info:
            fr.decode_entries(prefix)
        assert info.value.offset == record_start
        valid, end, error = fr.scan_entries(prefix)
        assert end == record_start
        assert len(valid) == starts.index(record_start)
        assert isinstance(error, TruncatedRecordError) and error.offset == record_start



@pytest.mark.parametrize("size", [65536 - 64, 65536, 65536 + 64, 4 * 65536])
def test_scans_on_both_sides_of_the_gil_threshold_read_the_spec(fr, size):
    """A buffer of 64 KiB or more is scanned with the GIL released, a smaller one without
    (the release costs more than a short scan): both read the records the spec writes, and
    a damaged record is the same typed error at the same offset on either side."""
    payloads = [bytes([i % 251]) * 100 for i in range(size // 132 + 1)]
    data = b"".join(spec_record(7 + i, 3, 0, p) for i, p in enumerate(payloads))[:size]
    whole = size // 132  # 32-byte header + 100-byte payload each
    valid, end, error = fr.scan_entries(data, 7)
    assert len(valid) == whole and end == whole * 132
    assert valid.first_index == 7 and valid.terms.tolist() == [3] * whole
    assert [bytes(p) for p in valid.payloads()] == payloads[:whole]
    assert (error is None) == (size % 132 == 0)
    damaged = bytearray(data)
    damaged[whole // 2 * 132 + 40] ^= 0x10  # a payload byte of the middle record
    with pytest.raises(CorruptRecordError) as info:
        fr.decode_entries(bytes(damaged), 7)
    assert info.value.offset == whole // 2 * 132


@given(batches(max_entries=8), st.binary(max_size=40), st.binary(max_size=40),
       st.integers(0, 3), st.sampled_from(["bytes", "bytearray", "view"]))
def test_decode_entries_at_is_decode_entries_of_the_slice(case, head, tail, damage, kind):
    """A message body's records, read in place: the same batch as decoding the slice, or the
    same typed error at the same offset (counted from the region's start), in both builds."""
    first, terms, kinds, payloads = case
    records = b"".join(spec_record(first + i, t, k, p)
                       for i, (t, k, p) in enumerate(zip(terms, kinds, payloads)))
    if damage and records:
        damaged = bytearray(records)
        damaged[(damage * 37) % len(records)] ^= 0x40
        records = bytes(damaged)
    whole = head + records + tail
    data = {"bytes": whole, "bytearray": bytearray(whole), "view": memoryview(whole)}[kind]
    start, length = len(head), len(records)
    expected_first = first if terms else 0
    for fr in implementations("framing"):
        try:
            want = fr.decode_entries(memoryview(whole)[start:start + length], expected_first)
        except FramingError as error:
            with pytest.raises(type(error)) as info:
                fr.decode_entries_at(data, start, length, expected_first)
            assert info.value.offset == error.offset
            continue
        got = fr.decode_entries_at(data, start, length, expected_first)
        assert got.tobytes() == want.tobytes() == records
        assert (got.first_index, len(got)) == (want.first_index, len(want))
        assert [bytes(p) for p in got.payloads()] == [bytes(p) for p in want.payloads()]
        assert got.terms.tolist() == want.terms.tolist()
        for start_, length_ in ((-1, 1), (0, len(whole) + 1), (len(whole), 1), (1, -1)):
            with pytest.raises(ValueError):
                fr.decode_entries_at(data, start_, length_, expected_first)

def test_decode_entries_at_refuses_a_negative_length(fr):
    """A negative ``length`` is a region outside ``data`` (the compiled kernel took -1 for
    "to the end", its internal default, and read ``b"\\x00"[1:]`` as an empty batch; found
    by the property test above)."""
    for data, start in ((b"\x00", 1), (b"", 0), (spec_record(1, 1, 0, b"x"), 0)):
        for length in (-1, -2):
            with pytest.raises(ValueError, match=f"{length} bytes at {start}"):
                fr.decode_entries_at(data, start, length)


@given(st.binary(max_size=400))
def test_garbage_is_a_typed_error_or_a_valid_batch(garbage):
    for fr in implementations("framing"):
        try:
            batch = fr.decode_entries(garbage)
        except FramingError as exc:
            assert 0 <= exc.offset <= len(garbage)
        else:
            assert batch.nbytes == len(garbage)
        valid, end, error = fr.scan_entries(garbage)
        assert 0 <= end <= len(garbage)
        assert (error is None) == (end == len(garbage))


@given(batches(max_entries=5), st.binary(min_size=1, max_size=100))
def test_garbage_after_valid_records(case, garbage):
    first, terms, kinds, payloads = case
    if not payloads:
        return
    for fr in implementations("framing"):
        data = fr.encode_entries(first, terms, payloads, kinds).tobytes()
        valid, end, error = fr.scan_entries(data + garbage)
        assert end >= len(data) or error is not None
        assert len(valid) >= len(payloads) or error is not None
        assert [bytes(p) for p in valid.payloads()][: len(payloads)] == payloads[: len(valid)]


@pytest.mark.parametrize(
    "records,message",
    [
        ([spec_record(1, 1, 0, b"x", version=2)], "version"),
        ([spec_record(1, 1, 0, b"x", flags=1)], "flags"),
        ([spec_record(1, 1, 3, b"x")], "kind"),
        ([spec_record(1, 1, 0, b"x"), spec_record(3, 1, 0, b"y")], "out of sequence"),
        ([spec_record(0, 1, 0, b"x")], "out of sequence"),
        ([spec_record(1, 2, 0, b"x"), spec_record(2, 1, 0, b"y")], "term"),
        ([spec_record(1, 0, 0, b"x")], "term"),
        ([spec_record(1, 1, 0, b"x", fix_crc=False)], "header checksum"),
    ],
)
def test_well_checksummed_but_invalid_records(fr, records, message):
    data = b"".join(records)
    with pytest.raises(CorruptRecordError, match=message) as info:
        fr.decode_entries(data)
    assert info.value.offset == (len(records[0]) if len(records) == 2 else 0)


def test_expected_first_index_and_prev_term(fr):
    data = fr.encode_entries(10, 5, [b"a", b"b"]).tobytes()
    assert fr.decode_entries(data, 10).first_index == 10
    with pytest.raises(CorruptRecordError, match="out of sequence"):
        fr.decode_entries(data, 11)
    with pytest.raises(CorruptRecordError, match="term"):
        fr.decode_entries(data, 10, prev_term=6)
    assert fr.decode_entries(b"", 42).first_index == 42


def test_oversized_record(fr):
    data = fr.encode_entries(1, 1, [b"x" * 100]).tobytes()
    with pytest.raises(OversizedRecordError) as info:
        fr.decode_entries(data, payload_bytes_max=99)
    assert info.value.offset == 0
    assert isinstance(info.value, CorruptRecordError) and isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="maximum"):
        fr.encode_entries(1, 1, [b"x" * 100], payload_bytes_max=99)


def test_encode_rejects_bad_input(fr):
    with pytest.raises(ValueError, match="first_index"):
        fr.encode_entries(0, 1, [b"a"])
    with pytest.raises(ValueError, match="term"):
        fr.encode_entries(1, 0, [b"a"])
    with pytest.raises(ValueError, match="term"):
        fr.encode_entries(1, [2, 1], [b"a", b"b"])
    with pytest.raises(ValueError, match="kind"):
        fr.encode_entries(1, 1, [b"a"], 3)
    with pytest.raises(ValueError, match="kind"):
        fr.encode_entries(1, 1, [b"a", b"b"], [0, 9])
    with pytest.raises(ValueError, match="terms"):
        fr.encode_entries(1, [1], [b"a", b"b"])
    with pytest.raises(TypeError):
        fr.encode_entries(1, 1, ["text"])


def test_payloads_from_any_buffer(fr):
    payloads = [bytearray(b"ab"), memoryview(b"cde"), np.arange(3, dtype=np.uint8)]
    batch = fr.encode_entries(1, 1, payloads)
    assert [bytes(p) for p in batch.payloads()] == [b"ab", b"cde", b"\x00\x01\x02"]



@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8), st.binary(max_size=9),
       st.binary(max_size=9), st.sampled_from([bytes, bytearray]))
def test_a_batch_decoded_from_a_view_reads_the_same_bytes(payloads, head, tail, kind):
    """Decoding from a view into a larger buffer (as the codec does with a message body) gives
    the payloads and records of that view, whatever the offset and the owner's type."""
    for fr in implementations("framing"):
        records = fr.encode_entries(3, 2, payloads).tobytes()
        owner = kind(head + records + tail)
        batch = fr.decode_entries(memoryview(owner)[len(head):len(head) + len(records)], 3)
        assert [bytes(p) for p in batch.payloads()] == payloads
        assert [bytes(e[3]) for e in batch] == payloads
        assert bytes(batch.data) == batch.tobytes() == records
        assert bytes(batch.slice(4, 99).data) == fr.encode_entries(4, 2, payloads[1:]).tobytes()


@pytest.mark.skipif(USE_TWINS, reason="the pure-Python twins are ordinary tracked objects")
def test_compiled_batches_cost_the_garbage_collector_nothing():
    """A log keeps its batches for long; a full collection must not walk each of them. The
    compiled batch is untracked and keeps no view: decoded from a view of bytes, it keeps the
    bytes (a view is a tracked object)."""
    import gc

    body = b"head" + raftcore.framing.encode_entries(7, 1, [b"a", b"bc"]).tobytes()
    batch = raftcore.framing.decode_entries(memoryview(body)[4:], 7)
    batch.payloads(), batch.payload(1), list(batch), batch.data  # noqa: B018 (views made)
    assert not gc.is_tracked(batch)
    assert batch.buffer is body and batch.base == 4
    assert all(not gc.is_tracked(field) for field in
               (batch.buffer, batch.terms, batch.kinds, batch.offsets))

def test_payloads_may_be_any_iterable(fr):
    """A list, a tuple and a generator of the same payloads encode to the same batch (the
    compiled kernel reads them as a tuple, the twin as a list)."""
    payloads = [b"a", bytearray(b"bb"), memoryview(b"ccc")]
    expected = fr.encode_entries(7, 2, payloads)
    for same in (tuple(payloads), (p for p in payloads)):
        batch = fr.encode_entries(7, 2, same)
        assert batch.tobytes() == expected.tobytes()
        assert batch.offsets.tolist() == expected.offsets.tolist()
    with pytest.raises(TypeError):
        fr.encode_entries(7, 2, 5)


def test_slice_concat_and_lookup(fr):
    payloads = [bytes([i]) * i for i in range(20)]
    batch = fr.encode_entries(100, [1] * 10 + [2] * 10, payloads)
    part = batch.slice(105, 112)
    assert (part.first_index, part.last_index, len(part)) == (105, 111, 7)
    assert bytes(part.payload(0)) == payloads[5]
    assert part.term_at(110) == 2 and part.term_at(109) == 1
    assert bytes(part.payload_at(111)) == payloads[11]
    assert fr.decode_entries(part.tobytes(), 105).terms.tolist() == part.terms.tolist()
    assert part.byte_size(105, 112) == part.nbytes == batch.byte_size(105, 112)
    assert len(batch.slice(50, 100)) == 0 and batch.slice(50, 100).first_index == 100
    assert batch.slice(0, 10**9) is batch
    with pytest.raises(IndexError):
        part.term_at(104)
    with pytest.raises(IndexError):
        part.payload(7)
    joined = fr.concat_batches([batch.slice(100, 103), batch.slice(103, 120)])
    assert joined.tobytes() == batch.tobytes()
    assert joined.offsets.tolist() == batch.offsets.tolist()
    with pytest.raises(ValueError, match="contiguous"):
        fr.concat_batches([batch.slice(100, 103), batch.slice(104, 120)])
    assert len(fr.concat_batches([])) == 0
    assert len(fr.empty_batch(5)) == 0 and fr.empty_batch(5).last_index == 4


_INDEXES = st.one_of(
    st.integers(-3, 140),
    st.integers(2**62, 2**70),
    st.integers(-(2**70), -(2**62)),
    st.builds(np.uint64, st.integers(0, 140)),
    st.builds(np.int64, st.integers(-3, 140)),
    st.booleans(),
)


def _outcome(call):
    try:
        result = call()
    except (IndexError, TypeError, ValueError, OverflowError) as error:
        return type(error).__name__
    if hasattr(result, "tobytes"):
        return (result.first_index, len(result), result.tobytes(), result.terms.tolist(),
                result.kinds.tolist(), result.offsets.tolist())
    return result


@given(first=st.integers(1, 120), terms=st.lists(st.integers(1, 3), max_size=12),
       lo=_INDEXES, hi=_INDEXES, index=_INDEXES, strided=st.booleans())
def test_lookups_and_slices_agree_with_the_twin(first, terms, lo, hi, index, strided):
    """term_at, last_term and slice take C fast paths for plain ints and uint64 arrays; any
    other index (numpy integers, bools, out-of-range and huge ints) or array layout must give
    the pure twin's answer or the same error type."""
    if USE_TWINS:
        pytest.skip("only the pure twin is built (PYRAFT_NO_EXTENSIONS=1)")
    import raftcore._framing as compiled
    import raftcore._framing_py as twin

    terms = sorted(terms)
    payloads = [bytes([i]) * i for i in range(len(terms))]
    batches = []
    for fr in (compiled, twin):
        batch = fr.encode_entries(first, terms, payloads) if terms else fr.empty_batch(first)
        if strided and terms:  # the same index held in arrays of another layout
            batch = fr.EntryBatch(batch.buffer, batch.base, batch.nbytes, batch.first_index,
                                  np.repeat(batch.terms, 2)[::2], batch.kinds,
                                  np.repeat(batch.offsets, 2)[::2])
        batches.append(batch)
    answers = [(_outcome(lambda b=b: b.term_at(index)), _outcome(lambda b=b: b.last_term),
                _outcome(lambda b=b: b.slice(lo, hi))) for b in batches]
    assert answers[0] == answers[1]
    if terms and type(index) is int and first <= index < first + len(terms):
        assert answers[0][0] == terms[index - first]


def _reading(batch, lo, hi, term):
    """Everything a reader asks of a batch, as plain values."""
    return (batch.first_index, batch.last_index, len(batch), batch.nbytes, batch.tobytes(),
            batch.terms.tolist(), batch.kinds.tolist(), batch.offsets.tolist(),
            batch.last_term, [bytes(p) for p in batch.payloads()],
            [(i, t, k, bytes(p)) for i, t, k, p in batch],
            [bytes(batch.payload(i)) for i in range(len(batch))],
            batch.config_positions.tolist(), _outcome(lambda: batch.byte_size(lo, hi)),
            _outcome(lambda: batch.all_of_term(lo, hi, term)),
            [batch.count_kind(kind) for kind in (0, 1, 2)])


@given(first=st.integers(1, 2**40), terms=st.lists(st.integers(1, 4), max_size=20),
       kinds=st.lists(st.integers(0, 2), min_size=20, max_size=20),
       cuts=st.lists(st.tuples(st.integers(0, 21), st.integers(0, 21)), max_size=4),
       lo=st.integers(0, 25), hi=st.integers(0, 25), term=st.integers(1, 4))
def test_slices_of_slices_read_as_the_twin_reads_them(first, terms, kinds, cuts, lo, hi, term):
    """A slice shares its parent's columns in the compiled kernel (its boundaries do not start
    at 0 there): at any depth, inline (a few entries) or not, every reading of it is the
    twin's, and ``offsets`` starts at 0."""
    if USE_TWINS:
        pytest.skip("only the pure twin is built (PYRAFT_NO_EXTENSIONS=1)")
    import raftcore._framing as compiled
    import raftcore._framing_py as twin

    terms = sorted(terms)
    kinds = kinds[:len(terms)]
    payloads = [bytes([i]) * (i % 5) for i in range(len(terms))]
    readings = []
    for fr in (compiled, twin):
        batch = fr.encode_entries(first, terms, payloads, kinds) if terms else \
            fr.empty_batch(first)
        chain = [_reading(batch, first + lo, first + hi, term)]
        for a, b in cuts:
            batch = batch.slice(first + a, first + b)
            chain.append(_reading(batch, first + lo, first + hi, term))
        readings.append(chain)
    assert readings[0] == readings[1]
    for reading in readings[0]:
        assert reading[7][0] == 0 and reading[7][-1] == reading[3]


def test_a_batchs_columns_are_read_only_and_outlive_it(fr):
    """``terms``, ``kinds`` and ``offsets`` are views of the batch's own columns in the
    compiled kernel: writing them is refused, and a view kept after its batch (and the
    slice it came from) is dropped still reads the entries, however many batches are made
    and freed since."""
    import gc

    def terms_of_a_slice():
        batch = fr.encode_entries(10, [1, 2, 3, 3, 4, 5, 6], [b"x"] * 7)
        part = batch.slice(12, 16)
        return part.terms, part.kinds, part.offsets

    terms, kinds, offsets = terms_of_a_slice()
    for i in range(2_000):  # reuse of freed batch objects and their memory
        fr.encode_entries(1, 9, [b"y" * (i % 50)] * (1 + i % 9))
    gc.collect()
    assert terms.tolist() == [3, 3, 4, 5]
    assert kinds.tolist() == [0, 0, 0, 0]
    assert offsets.tolist() == [0, 33, 66, 99, 132]
    if fr.IMPLEMENTATION == "compiled":
        batch = fr.encode_entries(1, 1, [b"a", b"b"])
        for column in (batch.terms, batch.kinds, batch.offsets, batch.slice(2, 3).offsets):
            with pytest.raises(ValueError, match="read-only"):
                column[0] = 7
        assert batch.terms.tolist() == [1, 1] and batch.offsets.tolist() == [0, 33, 66]


def test_a_batch_made_without_its_constructor_is_empty_and_one_is_made_once():
    """The compiled batch reads its columns through C pointers: ``EntryBatch.__new__``
    alone (what a careless subclass or copy might do) gives an empty batch without a buffer,
    whose readers answer or raise TypeError, never crash; a built batch refuses ``__init__``
    again (its columns are its own)."""
    if USE_TWINS:
        pytest.skip("only the pure twin is built (PYRAFT_NO_EXTENSIONS=1)")
    import raftcore._framing as fr

    bare = fr.EntryBatch.__new__(fr.EntryBatch)
    assert len(bare) == 0 and bare.terms.tolist() == [] and bare.kinds.tolist() == []
    assert bare.offsets.tolist() == [0] and bare.config_positions.tolist() == []
    assert bare.byte_size(0, 10) == 0
    for reading in (bare.payloads, bare.tobytes, lambda: list(bare)):
        with pytest.raises(TypeError):  # it holds no buffer: a typed error, not a crash
            reading()
    assert bare.last_term == 0 and bare.count_kind(0) == 0 and bare.all_of_term(0, 5, 1)
    batch = fr.encode_entries(1, 1, [b"a"])
    with pytest.raises(TypeError, match="immutable"):
        batch.__init__(b"", 0, 0, 1, [], [], [0])
    assert batch.terms.tolist() == [1] and bytes(batch.payload(0)) == b"a"


def test_the_constructor_checks_the_columns_lengths(fr):
    """A batch built from columns that disagree on its length is refused: the compiled
    kernel reads them in C."""
    batch = fr.encode_entries(1, 1, [b"a", b"b"])
    for terms, kinds, offsets in (([1], [0, 0], [0, 33, 66]), ([1, 1], [0], [0, 33, 66]),
                                  ([1, 1], [0, 0], [0, 33]), ([1, 1], [0, 0], [0, 33, 66, 99])):
        with pytest.raises(ValueError, match="needs"):
            fr.EntryBatch(batch.buffer, 0, batch.nbytes, 1, np.array(terms, dtype=np.uint64),
                          np.array(kinds, dtype=np.uint8), np.array(offsets, dtype=np.uint64))
    rebuilt = fr.EntryBatch(batch.buffer, 0, batch.nbytes, 1, [1, 1], [0, 0], [0, 33, 66])
    assert [bytes(p) for p in rebuilt.payloads()] == [b"a", b"b"]


@given(first=st.integers(1, 2**40), terms=st.lists(st.integers(1, 3), max_size=30),
       cuts=st.lists(st.integers(0, 30), max_size=6), layout=st.sampled_from(
           ["plain", "strided", "view", "int64"]), bump=st.booleans())
def test_concat_of_any_split_is_the_batch_and_agrees_with_the_twin(first, terms, cuts, layout,
                                                                   bump):
    """Joining the pieces of a batch cut anywhere (empty pieces included) gives the batch
    back; its pieces over a view of a larger buffer, in arrays of another layout or type, or
    with a later piece's terms lowered, give the twin's batch or the twin's error."""
    if USE_TWINS:
        pytest.skip("only the pure twin is built (PYRAFT_NO_EXTENSIONS=1)")
    import raftcore._framing as compiled
    import raftcore._framing_py as twin

    terms = sorted(terms)
    payloads = [bytes([i % 256]) * (i % 7) for i in range(len(terms))]
    bounds = sorted({first, first + len(terms), *(first + min(c, len(terms)) for c in cuts)})
    outcomes = []
    for fr in (compiled, twin):
        whole = fr.encode_entries(first, terms, payloads) if terms else fr.empty_batch(first)
        if layout == "view" and terms:  # records inside a larger bytearray, decoded in place
            owner = bytearray(b"head" + whole.tobytes() + b"tail")
            whole = fr.decode_entries(memoryview(owner)[4:4 + whole.nbytes], first)
        pieces = [whole.slice(lo, hi) for lo, hi in zip(bounds, bounds[1:])]
        pieces.insert(len(pieces) // 2, fr.empty_batch(first))  # empty pieces are skipped
        if layout in ("strided", "int64"):
            pieces = [fr.EntryBatch(p.buffer, p.base, p.nbytes, p.first_index,
                                    np.repeat(p.terms, 2)[::2] if layout == "strided"
                                    else p.terms.astype(np.int64), p.kinds,
                                    np.repeat(p.offsets, 2)[::2] if layout == "strided"
                                    else p.offsets.astype(np.int64)) for p in pieces]
        if bump and len(pieces) > 2 and len(pieces[-1]) and pieces[-1].terms[0] > 1:
            last = pieces[-1]  # a later piece whose terms start below its neighbour's
            pieces[-1] = fr.EntryBatch(last.buffer, last.base, last.nbytes, last.first_index,
                                       np.zeros(len(last), dtype=np.uint64), last.kinds,
                                       last.offsets)
        outcome = _outcome(lambda fr=fr, pieces=pieces: fr.concat_batches(pieces))
        outcomes.append(outcome)
        if not bump and terms:
            assert outcome == (first, len(terms), bytes(whole.tobytes()), terms,
                               whole.kinds.tolist(), whole.offsets.tolist())
    assert outcomes[0] == outcomes[1]


def test_batches_pickle(fr):
    batch = small_batch(fr)
    copy = pickle.loads(pickle.dumps(batch.slice(8, 10)))
    assert (copy.first_index, len(copy), bytes(copy.payload(1))) == (8, 2, b"gamma-gamma")


def test_errors_pickle_with_offset():
    err = pickle.loads(pickle.dumps(CorruptRecordError("bad", 12)))
    assert err.offset == 12 and isinstance(err, ValueError)


# ---- frames ------------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=8),
       st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_frames_round_trip_in_any_chunking(messages, chunks):
    stream = b"".join(spec_frame(t, b) for t, b in messages)
    for fr in implementations("framing"):
        assert b"".join(fr.encode_frame(t, b) for t, b in messages) == stream
        decoder = fr.FrameDecoder()
        got, pos, i = [], 0, 0
        while pos < len(stream):
            step = chunks[i % len(chunks)]
            got += decoder.feed(stream[pos : pos + step])
            pos += step
            i += 1
        assert got == messages
        assert decoder.buffered == 0 and decoder.stream_offset == len(stream)



#: tails past 64 KiB (checksummed without the GIL), built from a short pattern: drawing that
#: many bytes one by one costs hypothesis seconds
LARGE_TAILS = st.builds(lambda n, pattern: (pattern * (n // len(pattern) + 1))[:n],
                        st.integers(65536, 70000), st.binary(min_size=1, max_size=16))


@given(st.integers(0, 255), st.binary(max_size=300),
       st.one_of(st.binary(max_size=300), LARGE_TAILS))
def test_a_frame_header_over_a_body_in_two_parts_is_that_of_the_joined_body(t, body, tail):
    """``frame_header(t, body, tail)`` heads one frame whose body is both parts (a message's
    fixed part and its records, written without joining them); past 64 KiB the tail is
    checksummed with the GIL released."""
    for fr in implementations("framing"):
        header = fr.frame_header(t, body, tail)
        assert header == fr.frame_header(t, body + tail) == spec_frame(t, body + tail)[:16]
        assert fr.frame_header(t, memoryview(body), memoryview(tail)) == header
        assert fr.FrameDecoder(1 << 20).feed(header + body + tail) == [(t, body + tail)]
        assert fr.frame_header(t, body, None) == spec_frame(t, body)[:16]

def _decode_in_pieces(fr, stream, cuts, frame_bytes_max):
    """What a decoder makes of ``stream`` fed in the pieces between ``cuts``: the frames,
    the error (type and offset) and where the decoder stood after each piece."""
    decoder = fr.FrameDecoder(frame_bytes_max)
    frames, error, states = [], None, []
    for a, b in zip([0, *cuts], [*cuts, len(stream)]):
        try:
            frames += decoder.feed(stream[a:b])
        except CorruptFrameError as exc:
            error = (type(exc).__name__, exc.offset)
            break
        states.append((decoder.buffered, decoder.stream_offset))
    return frames, error, states


#: frame bodies of up to 200 KiB, built from a short pattern (drawn byte by byte they would
#: cost hypothesis seconds): larger than a connection's reads, so they span several calls
#: (20 KB with the twins alone: their checksum is a Python loop)
LARGE_BODIES = st.builds(lambda n, pattern: (pattern * (n // len(pattern) + 1))[:n],
                         st.integers(0, 20_000 if USE_TWINS else 200_000),
                         st.binary(min_size=1, max_size=16))


@given(st.lists(st.tuples(st.integers(0, 255), st.one_of(st.binary(max_size=64), LARGE_BODIES)),
                min_size=1, max_size=5),
       st.lists(st.integers(0, 1_100_000), max_size=12),
       st.one_of(st.none(), st.tuples(st.integers(0, 1_100_000), st.integers(0, 7))),
       st.sampled_from([100_000, 1 << 20]))
def test_large_frames_decode_alike_in_any_pieces(messages, cuts, flip, frame_bytes_max):
    """Frames whose bodies span many calls (each body filled in place as it comes, compiled)
    decode as the twin decodes them: the same frames, the same error at the same offset for
    a flipped bit or a body over ``frame_bytes_max``, and after each call the same bytes
    buffered and consumed."""
    stream = bytearray(b"".join(spec_frame(t, b) for t, b in messages))
    if flip is not None:
        stream[flip[0] % len(stream)] ^= 1 << flip[1]
    stream = bytes(stream)
    cuts = sorted({c % (len(stream) + 1) for c in cuts})
    outcomes = [_decode_in_pieces(fr, stream, cuts, frame_bytes_max)
                for fr in implementations("framing")]
    assert all(outcome == outcomes[0] for outcome in outcomes)
    frames, error, states = outcomes[0]
    if flip is None and all(len(b) <= frame_bytes_max for _, b in messages):
        assert frames == messages and error is None
        assert states[-1] == (0, len(stream))


def test_a_header_alone_does_not_allocate_its_frames_body(fr):
    """A frame header announcing 8 MiB (within ``frame_bytes_max``; 2 MiB with the twins
    alone, whose checksum is a Python loop) and a few bytes of its body allocate no more than
    about what came (the compiled decoder gives a body room for at most twice what came, at
    least 64 KiB, and grows it as bytes arrive); the body, once all of it came, is the one
    sent."""
    import tracemalloc

    body = bytes(range(256)) * ((2 if USE_TWINS else 8) * 4096)
    frame = spec_frame(7, body)
    decoder = fr.FrameDecoder(64 << 20)
    tracemalloc.start()
    try:
        assert decoder.feed(frame[:16 + 100]) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert decoder.buffered == 16 + 100
    got = []
    for at in range(16 + 100, len(frame), 300_000):
        got += decoder.feed(frame[at : at + 300_000])
    assert got == [(7, body)] and decoder.buffered == 0
    assert decoder.stream_offset == len(frame)


def test_frame_defects_are_typed_with_stream_offsets(fr):
    good = spec_frame(1, b"hello")
    for byte in range(len(good)):
        for bit in range(8):
            damaged = bytearray(good)
            damaged[byte] ^= 1 << bit
            decoder = fr.FrameDecoder()
            assert decoder.feed(good) == [(1, b"hello")]
            # the valid frame before the damaged one is delivered first, then the error
            with pytest.raises(CorruptFrameError) as info:
                decoder.feed(bytes(damaged) + good)
            assert info.value.offset == len(good)
            with pytest.raises(CorruptFrameError):  # a failed decoder stays failed
                decoder.feed(good)


def test_frames_before_a_defect_are_delivered(fr):
    decoder = fr.FrameDecoder()
    frames = decoder.feed(spec_frame(1, b"a") + spec_frame(2, b"b") + b"\x00" * 16)
    assert frames == [(1, b"a"), (2, b"b")]
    with pytest.raises(CorruptFrameError) as info:
        decoder.feed(b"")
    assert info.value.offset == 2 * (16 + 1)


def test_oversized_frame_is_refused_before_its_body_arrives(fr):
    decoder = fr.FrameDecoder(frame_bytes_max=1000)
    header = spec_frame(3, b"x" * 1001)[:16]
    with pytest.raises(OversizedFrameError) as info:
        decoder.feed(header)
    assert info.value.offset == 0 and isinstance(info.value, CorruptFrameError)
    assert fr.FrameDecoder(1000).feed(spec_frame(3, b"x" * 1000)) == [(3, b"x" * 1000)]
    with pytest.raises(ValueError):
        fr.FrameDecoder(0)
    with pytest.raises(ValueError):
        fr.frame_header(256, b"")


def test_compiled_kernel_is_loaded():
    assert raftcore.framing.IMPLEMENTATION == ("python" if USE_TWINS else "compiled")


# ---- the fixed head of a Raft message body ---------------------------------------------------
_HEAD_FIELDS = ("version", "code", "flags", "context_length", "entries_length",
                "chunk_length", "src", "dst", "term", "log_term", "index", "commit",
                "reject_hint", "hint_term", "snapshot_offset")
_HEAD_BITS = (8, 8, 8, 32, 32, 32) + (64,) * 9
heads = st.tuples(*(st.integers(0, (1 << bits) - 1) for bits in _HEAD_BITS))


@given(heads)
def test_a_message_head_is_its_layout_and_reads_back(values):
    """``pack_message_head`` writes the codec's layout (docs/format.md: ``<BBBBIII9Q``, the
    reserved byte 0), ``read_message_head`` reads every field back, from bytes or a view
    into a larger buffer; both implementations agree byte for byte."""
    spec = struct.pack("<BBBBIII9Q", *values[:3], 0, *values[3:])
    for fr in implementations("framing"):
        head = fr.pack_message_head(*values)
        assert type(head) is bytes and head == spec and len(head) == fr.MESSAGE_HEAD_BYTES
        for data in (head, memoryview(b"\x07" + head + b"tail")[1:], bytearray(head + b"x")):
            read = fr.read_message_head(data)
            assert tuple(getattr(read, name) for name in _HEAD_FIELDS) == values
            assert read.reserved == 0


@given(st.binary(min_size=88, max_size=100))
def test_any_88_bytes_read_as_a_head_alike(data):
    """Whatever the bytes (the codec checks the values afterwards), both implementations read
    the same fields, the reserved byte included."""
    fields = ("reserved", *_HEAD_FIELDS)
    read = [tuple(getattr(fr.read_message_head(data), name) for name in fields)
            for fr in implementations("framing")]
    assert all(r == read[0] for r in read)
    assert read[0][0] == data[3]


@pytest.mark.parametrize("position", range(15))
def test_a_head_field_out_of_range_is_an_overflow_error(fr, position):
    for bad in (-1, 1 << _HEAD_BITS[position]):
        values = [1] * 15
        values[position] = bad
        with pytest.raises(OverflowError):
            fr.pack_message_head(*values)
    values = [1] * 15
    values[position] = "1"
    with pytest.raises(TypeError):
        fr.pack_message_head(*values)


def test_a_short_head_is_a_value_error(fr):
    head = fr.pack_message_head(*([1] * 15))
    for short in (b"", head[:87], memoryview(head)[:50]):
        with pytest.raises(ValueError, match="88 bytes"):
            fr.read_message_head(short)
