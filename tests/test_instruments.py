"""The metrics' instruments (``pyraft.instruments``): compiled in the default build, so the
recordings are checked against their ``.py`` source run as well (the oracle), and against
the definition of a cumulative histogram."""

from __future__ import annotations

import bisect
import math
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st

from pyraft import _compiled
from pyraft.instruments import Counter, Gauge, Histogram
from pyraft.metrics import SECONDS_BUCKETS, SIZE_BUCKETS

TWIN = _compiled.load_twin("pyraft.instruments")

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([*SECONDS_BUCKETS, *SIZE_BUCKETS, 0, 0.0, -0.0]),  # on a bound
)
labels = st.sampled_from([(), ("a",), ("b",), (1,), (2,)])


def _same(a: object, b: object) -> bool:
    """Equal, NaN included (a sum that saw a NaN is NaN in both)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, labels), max_size=60),
       st.sampled_from([SECONDS_BUCKETS, SIZE_BUCKETS, (1, 2, 3)]))
def test_a_histogram_counts_as_its_source_and_as_bisect_does(observations, buckets) -> None:
    compiled = Histogram("h", "help", buckets, ("l",))
    twin = TWIN.Histogram("h", "help", buckets, ("l",))
    for value, label in observations:
        compiled.observe(value, label)
        twin.observe(value, label)
    assert compiled.series.keys() == twin.series.keys()
    for key, series in compiled.series.items():
        assert _same(series, twin.series[key]), (key, series, twin.series[key])
        assert compiled.count(key) == twin.count(key) == sum(series[0])
        assert _same(compiled.total(key), twin.total(key))
    # the definition: each value in the first bucket whose bound is not below it
    expected: dict[tuple, list[int]] = {}
    for value, label in observations:
        counts = expected.setdefault(label, [0] * (len(buckets) + 1))
        counts[bisect.bisect_left(sorted(buckets), value)] += 1
    assert {key: series[0] for key, series in compiled.series.items()} == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["inc", "set"]), values, labels), max_size=40))
def test_counters_and_gauges_keep_what_their_source_keeps(ops) -> None:
    pairs = [(Counter("c", "help", ("l",)), TWIN.Counter("c", "help", ("l",))),
             (Gauge("g", "help", ("l",)), TWIN.Gauge("g", "help", ("l",)))]
    for op, value, label in ops:
        for compiled, twin in pairs:
            if op == "inc" and isinstance(compiled, Counter):
                compiled.inc(value, label)
                twin.inc(value, label)
            else:
                compiled.set(value, label)
                twin.set(value, label)
    for compiled, twin in pairs:
        assert compiled.values.keys() == twin.values.keys()
        for key in compiled.values:
            assert _same(compiled.value(key), twin.value(key))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["inc", "set", "cell inc", "cell set", "clear"]),
                          st.integers(min_value=-(2**40), max_value=2**40), labels),
                max_size=50))
def test_a_series_held_as_a_cell_reads_as_one_kept_in_the_instrument(ops) -> None:
    """What the engine records through cells (``cell(labels)``, then ``cell.value``) is what
    ``values``, ``value`` and the Prometheus text read, in both builds, mixed with ``inc``
    and ``set``; a cell's series stays when the registry clears ``values``."""
    from pyraft.metrics import render_prometheus

    for module in (None, TWIN):
        counter = (TWIN.Counter if module else Counter)("c_total", "help", ("l",))
        gauge = (TWIN.Gauge if module else Gauge)("g", "help", ("l",))
        model: dict[tuple, dict[tuple, int]] = {id(counter): {}, id(gauge): {}}
        celled: set[tuple] = set()
        for op, value, label in ops:
            for instrument in (counter, gauge):
                kept = model[id(instrument)]
                if op == "clear":
                    instrument.values.clear()
                    for key in list(kept):
                        if (id(instrument), key) not in celled:
                            del kept[key]
                elif op.startswith("cell"):
                    cell = instrument.cell(label)
                    assert instrument.cell(label) is cell  # made once
                    celled.add((id(instrument), label))
                    if op == "cell inc":
                        cell.value += value
                        kept[label] = kept.get(label, 0) + value
                    else:
                        cell.value = value
                        kept[label] = value
                elif op == "inc" and instrument is counter:
                    instrument.inc(value, label)
                    kept[label] = kept.get(label, 0) + value
                else:
                    instrument.set(value, label)
                    kept[label] = value
        for instrument in (counter, gauge):
            kept = model[id(instrument)]
            assert instrument.values == kept
            for key in [*kept, ("absent",)]:
                assert instrument.value(key) == kept.get(key, 0)

        if module is TWIN:
            continue  # the exports know the classes pyraft.metrics imports

        class Registry:
            instruments = [counter, gauge]

        text = render_prometheus(Registry())  # type: ignore[arg-type]
        for instrument in (counter, gauge):
            for key, value in model[id(instrument)].items():
                series = f'{{l="{key[0]}"}}' if key else ""
                assert f"{instrument.name}{series} {value}\n" in text


def test_instruments_are_compiled_in_the_default_build_and_weakly_referenced() -> None:
    import pyraft.instruments

    assert _compiled.is_compiled(pyraft.instruments) != _compiled.PURE
    counter = Counter("c", "help")
    counter.inc()
    counter.inc(2.5)
    assert counter.value() == 3.5 and Counter("d", "help", ("l",)).value(("x",)) == 0
    assert weakref.ref(counter)() is counter  # the OpenTelemetry mirror keeps a WeakSet
    assert (Counter.kind, Gauge.kind, Histogram.kind) == ("counter", "gauge", "histogram")
