"""The instruments a ``Metrics`` registry holds: ``Counter``, ``Gauge`` and ``Histogram``.

A member records into them several times per write (each handled Ready observes its
duration, its append's duration and size and its sync's duration; each message sent or
received counts once), so this module is compiled from this very file, as the core is
(``pyraft._compiled``; typed by ``instruments.pxd``): a recording is one C method call
instead of an interpreted frame. ``pyraft.metrics`` builds the registries, the Prometheus
text and the OpenTelemetry mirror on top, and exports these classes under its own name.

A recording never raises for a value of the right kind and never allocates once its label
values have been seen: a series is created at the first recording of its label values.

A counter's or gauge's series can also be held as a ``Cell`` (``cell(labels)``): what records
into it several times per write keeps the cell and stores into its ``value``, a C field,
without building a label tuple or looking it up (the engine counts each message sent and
received per peer, and sets the term and the commit and applied indexes per Ready, so).
Reading the instrument (``values``, ``value``) sees the cells' values.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

__all__ = ["Cell", "Counter", "Gauge", "Histogram"]


class _Instrument:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = (), *,
                 pulled: bool = False) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.pulled = pulled  # set from elsewhere (mirrored as an observable instrument)
        self.otel: Any = None  # a histogram's mirrored OpenTelemetry instrument, if any
        #: ``otel`` is the OpenTelemetry API's proxy (``pyraft.metrics``): it forwards to its
        #: ``_real_instrument`` once an SDK is set, and does nothing before
        self.otel_proxied = False
        #: the proxy whose attribute dictionary ``_proxy_fields`` is (a histogram reads its
        #: ``_real_instrument`` there, a dict lookup per recording)
        self._proxy: Any = None
        self._proxy_fields: dict[str, Any] = {}
        self.otel_attributes: dict[str, str] = {}  # added to every OpenTelemetry attribute set
        self._attribute_cache: dict[tuple, dict] = {}

    def _attributes(self, values: tuple) -> dict:
        """The OpenTelemetry attributes of a label-value tuple (built once per tuple: this
        runs on every write's path)."""
        cache = self._attribute_cache
        attributes = cache.get(values)
        if attributes is None:
            attributes = dict(self.otel_attributes)
            attributes.update((label, str(value)) for label, value in zip(self.labels, values))
            if len(cache) < 4096:  # bounded: label values are members, operations, kinds
                cache[values] = attributes
        return attributes


class Cell:
    """One series of a counter or gauge, held by what records into it (``_Values.cell``):
    ``value`` is the series' value; reading the instrument sees it."""

    def __init__(self, value: float = 0) -> None:
        self.value = value


class _Values(_Instrument):
    """A value per label-value tuple (``values``), set from elsewhere or counted here."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = (), *,
                 pulled: bool = False) -> None:
        super().__init__(name, help, labels, pulled=pulled)
        self._values: dict[tuple, float] = {} if labels else {(): 0}
        self._cells: dict[tuple, Cell] = {}

    @property
    def values(self) -> dict[tuple, float]:
        """The value per label-value tuple (the series held as cells included): a dict the
        exports read and the registry's refresh may clear or fill; a series held as a cell
        stays in it."""
        values = self._values
        for labels, cell in self._cells.items():
            values[labels] = cell.value
        return values

    def cell(self, labels: tuple = ()) -> Cell:
        """The series of ``labels`` as a ``Cell`` (made once, at its current value)."""
        cell = self._cells.get(labels)
        if cell is None:
            cell = self._cells[labels] = Cell(self._values.get(labels, 0))
        return cell

    def set(self, value: float, labels: tuple = ()) -> None:
        cell = self._cells.get(labels)
        if cell is not None:
            cell.value = value
        else:
            self._values[labels] = value

    def value(self, labels: tuple = ()) -> float:
        cell = self._cells.get(labels)
        if cell is not None:
            return cell.value
        return self._values.get(labels, 0)


class Counter(_Values):
    """A monotonic total per label-value tuple (``pulled``: copied from a total kept
    elsewhere with ``set``)."""

    kind = "counter"

    def inc(self, amount: float = 1, labels: tuple = ()) -> None:
        cell = self._cells.get(labels)
        if cell is not None:
            cell.value += amount
        else:
            values = self._values
            values[labels] = values.get(labels, 0) + amount


class Gauge(_Values):
    """The latest value per label-value tuple (mirrored as an observable gauge)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels, pulled=True)


class _Series:
    """The observations of one label-value tuple: per-bucket counts (non-cumulative, +Inf
    last), their sum and their count. Compiled, three C fields and an int64 array: a
    recording changes them in place and allocates nothing."""

    def __init__(self, slots: int) -> None:
        self.counts = array("q", bytes(8 * slots))
        self.total = 0.0
        self.count = 0

    def as_list(self) -> list:
        """``[counts, sum, count]``, as ``Histogram.series`` gives it (a copy)."""
        return [list(self.counts), self.total, self.count]


class Histogram(_Instrument):
    """Observations counted in fixed cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Iterable[float],
                 labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._bounds = array("d", self.buckets)
        self._series: dict[tuple, _Series] = {}
        self._unlabelled: _Series | None = None  # ``_series[()]``, read without a lookup

    @property
    def series(self) -> dict[tuple, list]:
        """Per label-value tuple: ``[per-bucket counts (non-cumulative, +Inf last), sum,
        count]``, a copy taken now (the exports read it)."""
        return {labels: series.as_list() for labels, series in self._series.items()}

    def observe(self, value: float, labels: tuple = ()) -> None:
        series = self._series.get(labels) if labels else self._unlabelled
        if series is None:
            series = self._series[labels] = _Series(len(self.buckets) + 1)
            if not labels:
                self._unlabelled = series
        # the first bucket whose bound is not below the value (bisect_left's answer, NaN
        # included): a dozen bounds, scanned in C in the compiled build
        x = value
        bounds = self._bounds
        size = len(bounds)
        slot = 0
        while slot < size and bounds[slot] < x:
            slot += 1
        series.counts[slot] += 1
        series.total += x
        series.count += 1
        otel = self.otel
        if otel is not None:  # runs several times per write: the cached attributes first
            if self.otel_proxied:  # what the proxy would forward to: nothing, or the SDK's
                if otel is not self._proxy:  # instrument (read in its dict, not by a frame)
                    self._proxy, self._proxy_fields = otel, vars(otel)
                otel = self._proxy_fields.get("_real_instrument")
                if not otel:
                    return
            attributes = self._attribute_cache.get(labels)
            otel.record(value, attributes if attributes is not None
                        else self._attributes(labels))

    def count(self, labels: tuple = ()) -> int:
        series = self._series.get(labels)
        return series.count if series is not None else 0

    def total(self, labels: tuple = ()) -> float:
        series = self._series.get(labels)
        return series.total if series is not None else 0.0
