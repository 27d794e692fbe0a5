"""The clock kernel: ``perf_counter()`` is ``time.perf_counter``'s clock and reading, compiled
(a C call for the runtime's compiled modules, which cimport it) and twin alike."""

from __future__ import annotations

import time

import pytest

import raftcore.clock

from ._impls import implementation_id, implementations

IMPLS = implementations("clock")


@pytest.fixture(params=IMPLS, ids=implementation_id)
def impl(request):
    return request.param


def test_a_reading_falls_between_two_of_time_perf_counter(impl):
    """The same clock: bracketed by the standard library's readings, every time, and
    never going back; the compiled reading is a float of seconds as the twin's is."""
    previous = impl.perf_counter()
    for _ in range(10_000):
        before = time.perf_counter()
        reading = impl.perf_counter()
        after = time.perf_counter()
        assert type(reading) is float
        assert before <= reading <= after
        assert reading >= previous
        previous = reading


def test_it_measures_an_interval_as_time_perf_counter_does(impl):
    started, reference = impl.perf_counter(), time.perf_counter()
    time.sleep(0.02)
    spent, spent_reference = impl.perf_counter() - started, time.perf_counter() - reference
    assert 0.02 <= spent and abs(spent - spent_reference) < 0.005


def test_the_facade_hands_out_the_selected_implementation():
    assert raftcore.clock.perf_counter is IMPLS[0].perf_counter
    assert raftcore.clock.IMPLEMENTATION == IMPLS[0].IMPLEMENTATION
    assert raftcore.clock.IMPLEMENTATION in ("compiled", "python")
