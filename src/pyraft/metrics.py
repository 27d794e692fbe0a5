"""Metrics of a ``RaftCluster`` and of a ``KVClient``: a small registry, Prometheus text,
OpenTelemetry.

Each ``RaftCluster`` owns one ``Metrics`` (``cluster.metrics``). The runtime records events
as they happen (elections, Ready handling, fsync latency, entries per append, snapshots,
proposal batches, messages per peer); values that are cheaper to read than to track (term,
role, commit and applied index, replication lag, queue depth, transport counters) are read
from the cluster when metrics are collected (``Metrics.refresh``).

Everything is plain Python without locks: every recording happens on the event loop thread
(the fsync runs in a worker thread, but its latency is recorded on the loop after the await).

Each ``KVClient`` has a ``ClientMetrics`` (``client.metrics``; several clients may share
one): requests per operation and outcome, their latency, redirects, retries, leader changes
and timeouts, all recorded by the client as they happen.

When the ``opentelemetry`` API package is importable, the instruments are mirrored to the
meter ``"pyraft"`` of ``meter_provider`` (by default the global one,
``opentelemetry.metrics.get_meter``); without the package the mirror is a no-op (it is not a
dependency). Recorded counters and histograms become OpenTelemetry counters and histograms
(unit ``s`` for names ending in ``_seconds``, ``By`` for ``_bytes``); pulled values become
observable counters and gauges whose callbacks read the values last stored here. A server
member's OpenTelemetry attributes carry ``member`` (its id), so the members of one process
stay apart; the Prometheus text has no such label (one endpoint per member).
``render_prometheus`` produces the Prometheus text exposition format and ``serve_metrics``
serves it on ``GET /metrics`` (``pyraft node --metrics HOST:PORT``).

A member's ``Metrics`` also carry what operators alert on: whether a leader is known and
whether this member leads, why it lost leadership (``pyraft_leadership_lost_total{reason}``),
what runs (``pyraft_build_info``), the process (``process_*``, read by
``read_process_stats`` at each collection) and the key-value HTTP API's requests by route
pattern, method and status (recorded by ``http_metrics_middleware``).
``register_prometheus`` adds a member to an application's ``prometheus_client`` registry
(an optional dependency: the ``prometheus`` extra).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyraft.instruments import Counter, Gauge, Histogram, _Instrument

if TYPE_CHECKING:
    from pyraft.cluster.runtime import RaftCluster

log = logging.getLogger("pyraft.metrics")

__all__ = ["ClientMetrics", "Counter", "Gauge", "Histogram", "Metrics", "PrometheusCollector",
           "build_info", "http_metrics_middleware", "read_process_stats",
           "register_prometheus", "render_prometheus", "serve_metrics", "SECONDS_BUCKETS",
           "SIZE_BUCKETS"]

SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = tuple(float(4 ** i) for i in range(10))  # 1 .. 262144
BYTES_BUCKETS = tuple(float(1 << (10 + 2 * i)) for i in range(12))  # 1 KiB .. 4 TiB

ROLES = ("follower", "pre-candidate", "candidate", "leader")
#: the values of ``LeadershipLossReason`` (``pyraft.core``), every one exported from the start
LEADERSHIP_LOSS_REASONS = ("higher-term", "check-quorum", "transfer", "resign", "removed",
                           "stopped")
#: HTTP methods kept as label values; any other is counted as "other" (bounded cardinality)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
HTTP_LABELS = ("route", "method", "status")
BUILD_INFO_LABELS = ("version", "python", "python_implementation", "kernels", "crc32c")


# observable instruments already created, per meter and name: an SDK meter keeps the first
# registration's callbacks only, so one callback per (meter, name) reads every live instrument
_OBSERVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Registry:
    """A list of instruments, mirrored to OpenTelemetry when the API package is importable."""

    def __init__(self) -> None:
        self.instruments: list[_Instrument] = []

    def _add(self, instrument):
        self.instruments.append(instrument)
        return instrument

    def _mirror_to_opentelemetry(self, meter_provider, attributes: dict[str, str]) -> None:
        try:
            from opentelemetry import metrics as otel_metrics
        except ImportError:
            if meter_provider is not None:
                raise
            return
        try:
            meter = (otel_metrics.get_meter("pyraft") if meter_provider is None
                     else meter_provider.get_meter("pyraft"))
            for instrument in self.instruments:
                instrument.otel_attributes = dict(attributes)
                instrument._attribute_cache.clear()
                unit = _unit(instrument.name)
                # counters and gauges are read when the SDK collects (their totals are kept
                # here anyway): nothing is pushed per increment, which is per write
                if instrument.pulled or isinstance(instrument, Counter):
                    self._observe(meter, instrument, unit, otel_metrics)
                elif isinstance(instrument, Histogram):
                    instrument.otel = meter.create_histogram(
                        instrument.name, unit=unit, description=instrument.help)
                    instrument.otel_proxied = _api_proxy(instrument.otel)
        except Exception:  # an unusable SDK must never stop the member or the client
            log.exception("cannot mirror metrics to OpenTelemetry")
            for instrument in self.instruments:
                instrument.otel = None
                instrument.otel_proxied = False

    @staticmethod
    def _observe(meter, instrument, unit: str, otel_metrics) -> None:
        try:
            observed = _OBSERVED.setdefault(meter, {})
        except TypeError:  # a meter that cannot be weakly referenced: one callback each
            observed = {}
        live = observed.get(instrument.name)
        if live is None:
            live = observed[instrument.name] = weakref.WeakSet[Any]()

            def observe(_options) -> Iterator:
                for each in list(live):
                    for labels, value in list(each.values.items()):
                        yield otel_metrics.Observation(value, each._attributes(labels))

            create = (meter.create_observable_counter if isinstance(instrument, Counter)
                      else meter.create_observable_gauge)
            create(instrument.name, callbacks=[observe], unit=unit,
                   description=instrument.help)
        live.add(instrument)


def _api_proxy(instrument: Any) -> bool:
    """Is ``instrument`` the OpenTelemetry API's proxy? ``get_meter`` before any SDK is set
    (``set_meter_provider``) makes proxies: each does nothing until an SDK is set, then
    forwards every recording to the SDK's instrument it keeps in ``_real_instrument``. A
    histogram records into that attribute directly (``Histogram.observe``): several times per
    write, a frame of the proxy's ``record`` cost more than the rest of the recording, and
    did nothing when no SDK was set. An API without that attribute (in the instance's
    dictionary) gets ordinary calls."""
    try:
        from opentelemetry.metrics._internal.instrument import _ProxyInstrument
    except ImportError:
        return False
    # ``Histogram.observe`` reads that attribute in the instance's dictionary
    return isinstance(instrument, _ProxyInstrument) and \
        "_real_instrument" in getattr(instrument, "__dict__", ())


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "s"
    if name.endswith("_bytes"):
        return "By"
    return ""


class Metrics(_Registry):
    """The instruments of one member; ``refresh(cluster)`` reads the pulled values.

    ``opentelemetry=False`` skips the mirror; ``meter_provider`` (an OpenTelemetry
    ``MeterProvider``) replaces the global one."""

    def __init__(self, member: int | None = None, *, opentelemetry: bool = True,
                 meter_provider=None) -> None:
        super().__init__()
        self.member = member
        add = self._add
        # elections and state
        self.elections_started = add(Counter(
            "pyraft_elections_started_total", "Elections this member started (as candidate)."))
        self.elections_won = add(Counter(
            "pyraft_elections_won_total", "Elections this member won (became leader)."))
        self.term = add(Gauge("pyraft_term", "The current term."))
        self.role = add(Gauge(
            "pyraft_role", "1 for the role this member has now, 0 for the others.", ("role",)))
        for role in ROLES:
            self.role.set(0, (role,))
        self.commit_index = add(Gauge("pyraft_commit_index", "The highest committed index."))
        self.applied_index = add(Gauge(
            "pyraft_applied_index", "The highest index applied to the state machine."))
        self.last_index = add(Gauge("pyraft_last_index", "The last index in the local log."))
        self.replication_lag = add(Gauge(
            "pyraft_replication_lag_entries",
            "On the leader: entries a follower lacks (last index minus its match index).",
            ("follower",)))
        self.has_leader = add(Gauge(
            "pyraft_has_leader", "1 while this member knows a leader (itself included), else 0."))
        self.is_leader = add(Gauge("pyraft_is_leader", "1 while this member leads, else 0."))
        self.leadership_lost = add(Counter(
            "pyraft_leadership_lost_total",
            "Times this member stopped leading, by reason (higher-term, check-quorum, "
            "transfer, resign, removed, stopped).", ("reason",)))
        for reason in LEADERSHIP_LOSS_REASONS:
            self.leadership_lost.set(0, (reason,))
        self.build_info = add(Gauge(
            "pyraft_build_info",
            "Always 1; the labels say what runs: the raftcore version, the Python version and "
            "implementation, the kernels (compiled or python twins) and the CRC32C code.",
            BUILD_INFO_LABELS))
        self.build_info.set(1, tuple(build_info()[label] for label in BUILD_INFO_LABELS))
        # the HTTP API (recorded by ``http_metrics_middleware``)
        self.http_requests = add(Counter(
            "pyraft_http_requests_total",
            "HTTP API requests answered, by route pattern, method and status.",
            HTTP_LABELS))
        self.http_request_seconds = add(Histogram(
            "pyraft_http_request_duration_seconds",
            "Time to answer an HTTP API request, by route pattern, method and status.",
            SECONDS_BUCKETS, HTTP_LABELS))
        # the process (read from /proc on Linux when collected)
        self.process_cpu = add(Counter(
            "process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
            pulled=True))
        self.process_resident_memory = add(Gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes (where /proc is missing: the peak, ru_maxrss)."))
        self.process_virtual_memory = add(Gauge(
            "process_virtual_memory_bytes", "Virtual memory size in bytes (Linux only)."))
        self.process_open_fds = add(Gauge(
            "process_open_fds", "Number of open file descriptors."))
        self.process_max_fds = add(Gauge(
            "process_max_fds", "Maximum number of open file descriptors (soft limit)."))
        self.process_start_time = add(Gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds."))
        self._process = {
            "cpu_seconds": self.process_cpu,
            "resident_memory_bytes": self.process_resident_memory,
            "virtual_memory_bytes": self.process_virtual_memory,
            "open_fds": self.process_open_fds,
            "max_fds": self.process_max_fds,
            "start_time_seconds": self.process_start_time,
        }
        for instrument in self._process.values():
            instrument.values.clear()  # no sample until read
        # the Ready pipeline and the disk
        self.ready_seconds = add(Histogram(
            "pyraft_ready_seconds", "Time to handle one Ready (persist, send, apply).",
            SECONDS_BUCKETS))
        self.append_seconds = add(Histogram(
            "pyraft_append_seconds", "Time to write one Ready's entries to the log (no sync).",
            SECONDS_BUCKETS))
        self.append_entries = add(Histogram(
            "pyraft_append_entries", "Entries written to the log per Ready (the sync batch).",
            SIZE_BUCKETS))
        self.fsync_seconds = add(Histogram(
            "pyraft_fsync_seconds", "Time of the sync and hard-state save per Ready that must "
            "be durable (entries, term or vote; one that only moves the commit index is not "
            "timed).",
            SECONDS_BUCKETS))
        self.storage_failures = add(Counter(
            "pyraft_storage_failures_total", "Failed attempts to persist a Ready."))
        # snapshots
        self.snapshots = add(Counter(
            "pyraft_snapshots_total",
            "Snapshots created locally, installed from the leader or exported (kind).",
            ("kind",)))
        self.snapshot_bytes = add(Histogram(
            "pyraft_snapshot_bytes", "Sizes of snapshots created, installed or exported.",
            BYTES_BUCKETS,
            ("kind",)))
        self.snapshot_seconds = add(Histogram(
            "pyraft_snapshot_seconds",
            "Time to store a created, install a received or export a snapshot.",
            SECONDS_BUCKETS, ("kind",)))
        # proposals
        self.proposal_queue_depth = add(Gauge(
            "pyraft_proposal_queue_depth", "Commands waiting to be proposed."))
        self.proposal_batch = add(Histogram(
            "pyraft_proposal_batch_size", "Commands proposed together in one batch.",
            SIZE_BUCKETS))
        # messages per peer, counted by the runtime
        self.messages_sent = add(Counter(
            "pyraft_peer_messages_sent_total", "Raft messages handed to the transport per peer.",
            ("peer",)))
        self.messages_received = add(Counter(
            "pyraft_peer_messages_received_total", "Raft messages received per peer.",
            ("peer",)))
        self.bytes_sent = add(Counter(
            "pyraft_peer_bytes_sent_total", "Bytes written to each peer's connection.",
            ("peer",), pulled=True))
        self.bytes_received = add(Counter(
            "pyraft_peer_bytes_received_total", "Bytes read from each peer's connection.",
            ("peer",), pulled=True))
        # transport totals (``Transport.counters``, when the transport keeps them)
        self.transport = {
            field: add(Counter(f"pyraft_transport_{field}_total", help, pulled=True))
            for field, help in (
                ("sent", "Messages the transport handed to a connection."),
                ("received", "Messages the transport delivered to the runtime."),
                ("dropped", "Messages dropped (queue full, peer unreachable or unknown)."),
                ("connections", "Connection handshakes completed."),
                ("refused", "Connection handshakes refused (rejected peers and TLS failures)."),
                ("errors", "Connections closed for a frame or protocol error or a timeout."),
            )
        }
        self._last_role: str | None = None
        if opentelemetry:
            self._mirror_to_opentelemetry(
                meter_provider, {} if member is None else {"member": str(member)})

    # ---- recording helpers (called by the runtime) ------------------------------------------
    def leader_changed(self, role: str, leader: int) -> None:
        """Record a soft-state change: this member's role and the leader it knows (0: none)."""
        self.role_changed(role)
        self.has_leader.set(1 if leader else 0)
        self.is_leader.set(1 if role == "leader" else 0)

    def refresh_process(self) -> None:
        """Read the process metrics (``read_process_stats``)."""
        stats = read_process_stats()
        for key, instrument in self._process.items():
            value = stats.get(key)
            if value is None:
                instrument.values.clear()
            else:
                instrument.values[()] = value

    def role_changed(self, role: str) -> None:
        """Record a role change reported by a Ready (``Role.value``)."""
        previous, self._last_role = self._last_role, role
        if role == previous:
            return
        if role == "candidate" or (role == "leader" and previous != "candidate"):
            # a candidate that wins within one Ready shows up as leader directly
            self.elections_started.inc()
        if role == "leader":
            self.elections_won.inc()
        for name in ROLES:
            self.role.set(1 if name == role else 0, (name,))

    def refresh(self, cluster: RaftCluster) -> None:
        """Read the values that are pulled rather than recorded from ``cluster``."""
        self.refresh_process()
        status = cluster.view
        if status is not None:
            self.term.set(status.term)
            if cluster.stopped:  # a stopped member leads nothing
                self.leader_changed("follower", 0)
            else:
                self.leader_changed(status.role.value, status.lead)
            self.commit_index.set(status.committed)
            last = status.last_index
            self.last_index.set(last)
            lag = self.replication_lag
            lag.values.clear()
            if status.is_leader:
                for member, progress in status.progress.items():
                    if member != cluster.id:
                        lag.set(max(0, last - progress.match), (member,))
        self.applied_index.set(cluster.applied_index)
        self.proposal_queue_depth.set(cluster.proposals_queued)
        transport = cluster.transport
        counters = transport.counters
        if counters is not None:
            totals = counters.totals()
            for field, gauge in self.transport.items():
                gauge.set(totals[field])
        for metric, counts in ((self.bytes_sent, transport.peer_bytes_sent),
                               (self.bytes_received, transport.peer_bytes_received)):
            for peer, count in counts.items():
                metric.set(count, (peer,))


CLIENT_OUTCOMES = ("ok", "negative", "unavailable", "session_expired", "request_error",
                   "client_error", "cancelled", "error")
CLIENT_RETRY_REASONS = ("connection", "timeout", "unavailable", "server_timeout")


class ClientMetrics(_Registry):
    """The instruments of one or more ``KVClient``; every value is recorded by the client.

    A request is one call of a ``KVClient`` method (``operation``: ``get``, ``put``,
    ``delete``, ``cas``, ``status``, ``open_session``), all its attempts included. Its
    ``outcome`` is ``ok``; ``negative`` (an answer that found nothing: ``get`` or ``delete``
    of an absent key, a ``cas`` whose comparison failed); or the error that ended it:
    ``unavailable`` (``UnavailableError``), ``session_expired``, ``request_error`` (a 4xx),
    ``client_error`` (another ``KVClientError``), ``cancelled``, ``error`` (anything else).
    Arguments the client rejects before sending (a bad key) are not requests.

    Recording costs a few dict updates (and the OpenTelemetry calls when mirrored);
    ``opentelemetry=False`` skips the mirror, ``meter_provider`` replaces the global one.
    """

    def __init__(self, *, opentelemetry: bool = True, meter_provider=None) -> None:
        super().__init__()
        add = self._add
        self.requests = add(Counter(
            "pyraft_client_requests_total", "Client requests finished, by operation and outcome.",
            ("operation", "outcome")))
        self.request_seconds = add(Histogram(
            "pyraft_client_request_seconds",
            "Client request latency, all attempts included, by operation.", SECONDS_BUCKETS,
            ("operation",)))
        self.redirects = add(Counter(
            "pyraft_client_redirects_total", "Redirects to the leader followed by the client."))
        self.retries = add(Counter(
            "pyraft_client_retries_total",
            "Attempts sent again after a failed one, by reason (connection, timeout, "
            "unavailable: a 503, server_timeout: a 504).", ("reason",)))
        self.leader_changes = add(Counter(
            "pyraft_client_leader_changes_total",
            "Times the client learned a leader other than the one it knew before."))
        self.timeouts = add(Counter(
            "pyraft_client_timeouts_total",
            "Attempts whose outcome is unknown because of a timeout, by operation and side "
            "(client: no answer within timeout_s; server: a 504).", ("operation", "side")))
        if opentelemetry:
            self._mirror_to_opentelemetry(meter_provider, {})

    def request_finished(self, operation: str, outcome: str, seconds: float) -> None:
        """Record one finished request: its outcome and its latency."""
        self.requests.inc(1, (operation, outcome))
        self.request_seconds.observe(seconds, (operation,))

    def render_prometheus(self) -> str:
        """The instruments in the Prometheus text format (version 0.0.4)."""
        return render_prometheus(self)


# ---- Prometheus text exposition ----------------------------------------------------------------
def _escape_label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _labels(names: tuple, values: tuple, extra: str = "") -> str:
    parts = [f'{name}="{_escape_label(value)}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def render_prometheus(metrics: Metrics | ClientMetrics, cluster: RaftCluster | None = None) -> str:
    """The instruments in the Prometheus text format (version 0.0.4); with ``cluster``, the
    pulled values are refreshed first."""
    if cluster is not None and isinstance(metrics, Metrics):
        metrics.refresh(cluster)
    lines: list[str] = []
    for instrument in metrics.instruments:
        name = instrument.name
        help_text = instrument.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {instrument.kind}")
        if isinstance(instrument, Histogram):
            for labels, (counts, total, count) in sorted(instrument.series.items(),
                                                         key=lambda item: str(item[0])):
                cumulative = 0
                for bound, hits in zip((*instrument.buckets, math.inf), counts):
                    cumulative += hits
                    le = 'le="' + ("+Inf" if math.isinf(bound) else _number(bound)) + '"'
                    lines.append(f"{name}_bucket{_labels(instrument.labels, labels, le)} "
                                 f"{cumulative}")
                series_labels = _labels(instrument.labels, labels)
                lines.append(f"{name}_sum{series_labels} {_number(total)}")
                lines.append(f"{name}_count{series_labels} {count}")
        else:
            values = instrument.values if isinstance(instrument, (Counter, Gauge)) else {}
            for labels, value in sorted(values.items(), key=lambda item: str(item[0])):
                lines.append(f"{name}{_labels(instrument.labels, labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(cluster, host: str = "127.0.0.1", port: int = 0, *, sock=None):
    """Serve ``GET /metrics`` for ``cluster`` on ``host:port``, or on a bound listening
    ``sock``; returns the aiohttp ``AppRunner`` (``await runner.cleanup()`` stops it)."""
    from aiohttp import web

    async def metrics_handler(_request):
        text = render_prometheus(cluster.metrics, cluster)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


# ---- build and process information ------------------------------------------------------------
_build_info: dict[str, str] | None = None


def build_info() -> dict[str, str]:
    """What runs, as the labels of ``pyraft_build_info``: ``version`` (of the installed
    raftcore distribution), ``python`` and ``python_implementation``, ``kernels``
    (``compiled``, or ``python`` when ``PYRAFT_NO_EXTENSIONS`` forces the twins) and
    ``crc32c`` (the CRC32C code chosen at import, e.g. ``sse4.2``)."""
    global _build_info
    if _build_info is None:
        import raftcore
        from raftcore.crc import crc32c_implementation

        try:
            from importlib.metadata import PackageNotFoundError, version
            try:
                installed = version("raftcore")
            except PackageNotFoundError:  # run from a source tree
                installed = raftcore.__version__
        except ImportError:  # pragma: no cover - always present on Python >= 3.8
            installed = raftcore.__version__
        _build_info = {
            "version": installed,
            "python": platform.python_version(),
            "python_implementation": platform.python_implementation(),
            "kernels": "python" if raftcore.USE_TWINS else "compiled",
            "crc32c": str(crc32c_implementation()),
        }
    return dict(_build_info)


#: when this module was imported: the start time where /proc cannot say
_IMPORTED_AT = time.time()
_boot_time: float | None = None


def _linux_boot_time() -> float:
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    _boot_time = float(line.split()[1])
                    break
            else:
                raise OSError("/proc/stat has no btime line")
    return _boot_time


def read_process_stats(proc: str = "/proc/self") -> dict[str, float]:
    """This process's CPU seconds (user + system), resident and virtual memory bytes, open
    and maximum file descriptors and start time (seconds since the epoch), keyed as in
    ``Metrics._process``. On Linux from ``proc`` (``/proc/self``); elsewhere (or where
    ``proc`` cannot be read) through ``resource`` and ``os``: CPU from ``getrusage``, the
    resident memory is the peak (``ru_maxrss``), open descriptors from ``/dev/fd`` where it
    exists, the start time is when ``pyraft.metrics`` was imported, and there is no virtual
    memory size. A value that cannot be read is left out."""
    stats: dict[str, float] = {}
    try:
        import resource
    except ImportError:  # Windows
        resource = None  # type: ignore[assignment]
    if resource is not None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit != resource.RLIM_INFINITY:
            stats["max_fds"] = float(soft_limit)
    try:
        with open(f"{proc}/stat", "rb") as stat_file:
            text = stat_file.read()
        # the fields after the command name (which may hold spaces and parentheses); field
        # n of proc(5) is fields[n - 3]
        fields = text[text.rindex(b")") + 2:].split()
        ticks = os.sysconf("SC_CLK_TCK")
        stats["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / ticks
        stats["start_time_seconds"] = _linux_boot_time() + int(fields[19]) / ticks
        stats["virtual_memory_bytes"] = float(int(fields[20]))
        stats["resident_memory_bytes"] = float(int(fields[21]) * os.sysconf("SC_PAGE_SIZE"))
        stats["open_fds"] = float(len(os.listdir(f"{proc}/fd")))
        return stats
    except (OSError, ValueError, IndexError, AttributeError):
        pass  # not Linux, or no /proc: the portable reading below
    if resource is not None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats["cpu_seconds"] = usage.ru_utime + usage.ru_stime
        # kilobytes on Linux and the BSDs, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        stats["resident_memory_bytes"] = float(usage.ru_maxrss * scale)
    else:
        times = os.times()
        stats["cpu_seconds"] = times.user + times.system
    try:
        stats["open_fds"] = float(len(os.listdir("/dev/fd")))
    except OSError:
        pass
    stats["start_time_seconds"] = _IMPORTED_AT
    return stats


# ---- HTTP API metrics -------------------------------------------------------------------------
def http_metrics_middleware(metrics: Metrics):
    """An aiohttp middleware that counts each request in ``pyraft_http_requests_total`` and
    times it in ``pyraft_http_request_duration_seconds``, by route pattern (``/v1/kv/{key}``,
    never the path itself: ``unmatched`` for a path no route takes), method (``other`` for
    an unusual one) and status (``499`` when the client went away first). Install it first
    (outermost), so the status is the one sent."""
    import asyncio

    from aiohttp import web

    requests, seconds = metrics.http_requests, metrics.http_request_seconds

    @web.middleware
    async def record_http_metrics(request, handler):
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in HTTP_METHODS else "other"
            labels = (route, method, str(status))
            requests.inc(1, labels)
            seconds.observe(time.perf_counter() - started, labels)

    return record_http_metrics


# ---- prometheus_client adapter ----------------------------------------------------------------
_PROMETHEUS_MISSING = ("the prometheus_client adapter of pyraft.metrics needs the "
                       "prometheus-client package: pip install 'raftcore[prometheus]'")


def _prometheus_core():
    try:
        from prometheus_client import core
    except ImportError as error:
        raise ImportError(_PROMETHEUS_MISSING) from error
    return core


class PrometheusCollector:
    """A ``prometheus_client`` collector yielding a member's metrics: the same families,
    series and values as ``render_prometheus``. ``process=False`` leaves out the
    ``process_*`` families (an application's registry usually has its own process
    collector, and a name registered twice is refused). Needs the ``prometheus`` extra."""

    def __init__(self, metrics: Metrics | ClientMetrics, cluster=None, *,
                 process: bool = False) -> None:
        self._core = _prometheus_core()
        self.metrics = metrics
        self.cluster = cluster
        self.process = process

    def _instruments(self) -> list[_Instrument]:
        return [instrument for instrument in self.metrics.instruments
                if self.process or not instrument.name.startswith("process_")]

    def describe(self) -> Iterator:
        """The families without samples (what ``CollectorRegistry.register`` checks)."""
        for instrument in self._instruments():
            yield self._family(instrument, with_samples=False)

    def collect(self) -> Iterator:
        if self.cluster is not None and isinstance(self.metrics, Metrics):
            self.metrics.refresh(self.cluster)
        elif self.process and isinstance(self.metrics, Metrics):
            self.metrics.refresh_process()
        for instrument in self._instruments():
            yield self._family(instrument, with_samples=True)

    def _family(self, instrument: _Instrument, with_samples: bool):
        core = self._core
        labels = list(instrument.labels)
        if isinstance(instrument, Histogram):
            family = core.HistogramMetricFamily(instrument.name, instrument.help, labels=labels)
            if with_samples:
                bounds = [*(_number(bound) for bound in instrument.buckets), "+Inf"]
                for values, (counts, total, _count) in sorted(
                        instrument.series.items(), key=lambda item: str(item[0])):
                    cumulative, buckets = 0, []
                    for bound, hits in zip(bounds, counts):
                        cumulative += hits
                        buckets.append((bound, cumulative))
                    family.add_metric([str(value) for value in values], buckets, total)
            return family
        kind = (core.CounterMetricFamily if isinstance(instrument, Counter)
                else core.GaugeMetricFamily)
        family = kind(instrument.name, instrument.help, labels=labels)
        if with_samples and isinstance(instrument, (Counter, Gauge)):
            for values, value in sorted(instrument.values.items(),
                                        key=lambda item: str(item[0])):
                family.add_metric([str(v) for v in values], value)
        return family


def register_prometheus(cluster, registry=None, *, process: bool = False) -> PrometheusCollector:
    """Register the metrics of ``cluster`` (a ``RaftCluster``) in a ``prometheus_client``
    registry (by default ``prometheus_client.REGISTRY``); returns the collector
    (``registry.unregister(collector)`` removes it). The pulled values are read from the
    cluster at every scrape. Several members of one process need one registry each: their
    families have the same names. Needs the ``prometheus`` extra."""
    collector = PrometheusCollector(cluster.metrics, cluster, process=process)
    if registry is None:
        from prometheus_client import REGISTRY as registry
    registry.register(collector)
    return collector
