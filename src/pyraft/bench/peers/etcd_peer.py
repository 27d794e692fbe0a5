"""etcd as a benchmark peer: a 3-member cluster on 127.0.0.1, load over its v3 JSON gateway.

The members are the ``etcd`` binary on ``PATH`` (Debian: ``apt-get install etcd-server
etcd-client``), each with its data directory under ``workdir`` and its own free ports; they
are started here and stopped by pid (SIGTERM, SIGKILL after a timeout). etcd has one mode: it
fsyncs its WAL before acknowledging, so ``mode`` is ``"durable (fsync)"``.

The load runs in a separate process (``python -m pyraft.bench.peers.etcd_peer load ...``) with
:func:`pyraft.bench.load.run_load`, the driver pyraft's own HTTP load generator uses, so the
shapes match: each write is ``POST /v3/kv/put`` with a base64 key (1000 keys round robin) and
a ``size``-byte value, sent to the leader (found through ``/v3/maintenance/status``); a write
counts when etcd answers 200 with a response header. A discarded warm-up with the same shape
comes first. :func:`check_perf` runs ``etcdctl check perf`` (60 s, etcd's own load) as an
extra figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from pyraft.bench.peers import loadgen
from pyraft.bench.peers._proc import (
    LineReader,
    ManagedCluster,
    PeerError,
    free_port,
    log_tail,
    python_child,
    stop_process,
)
from pyraft.bench.stats import make_result, skipped

SYSTEM = "etcd"
MODE = "durable (fsync)"
#: the one configuration run (etcd has no batching period to turn off: it proposes and
#: fsyncs as writes arrive, so its defaults are its latency configuration too)
DEFAULT_CONFIG = "etcd defaults (WAL fsynced before every acknowledgement)"
#: ``workload.api``: etcd's v3 JSON gateway over HTTP/1.1 (pyraft's HTTP API is "http" too).
API = "http"
MEMBERS = 3
#: Closed loop uses one HTTP connection per in-flight write: keep well under the fd limit.
INFLIGHT_MAX = 4096
#: Open loop: writes beyond this many outstanding are not sent and count as errors.
OPEN_OUTSTANDING_MAX = 1024
KEYS = 1000
DRAIN_S = 10.0
REQUEST_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
#: In-flight counts tried by :func:`peak`.
PEAK_INFLIGHTS = (64, 256, 1024)
CHECK_PERF_LOADS = ("s", "m", "l", "xl")
_MODULE = "pyraft.bench.peers.etcd_peer"


def available() -> str | None:
    """None when etcd (and aiohttp for the load) can be used, else why not."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (Debian: apt-get install etcd-server etcd-client)"
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "aiohttp is not installed (pip install aiohttp, or the 'bench' extra)"
    return None


def version() -> str:
    """The version ``etcd --version`` reports ('unknown' if it says none)."""
    output = subprocess.run(["etcd", "--version"], capture_output=True, text=True,
                            timeout=30).stdout
    match = re.search(r"etcd Version:\s*(\S+)", output)
    return match.group(1) if match else "unknown"


def _post_json(url: str, body: dict, timeout_s: float = 5.0) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


class Cluster(ManagedCluster):
    """Three etcd members under ``workdir``; use as a context manager.

    :meth:`close` stops every member by pid and removes the data directories.
    """

    def __init__(self, workdir: str) -> None:
        self.directory = pathlib.Path(tempfile.mkdtemp(prefix="etcd-", dir=workdir))
        self.processes: list[subprocess.Popen] = []
        self.client_urls: list[str] = []
        self.logs: list[pathlib.Path] = []
        self.version = "unknown"

    def start(self) -> Cluster:
        """Start the members and wait until one leads; :class:`PeerError` if they do not."""
        self.version = version()
        names = [f"m{number}" for number in range(MEMBERS)]
        peer_urls = [f"http://127.0.0.1:{free_port()}" for _ in names]
        self.client_urls = [f"http://127.0.0.1:{free_port()}" for _ in names]
        initial = ",".join(f"{name}={url}" for name, url in zip(names, peer_urls))
        token = self.directory.name
        for name, peer_url, client_url in zip(names, peer_urls, self.client_urls):
            log = self.directory / f"{name}.log"
            self.logs.append(log)
            args = ["etcd", "--name", name, "--data-dir", str(self.directory / name),
                    "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                    "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", token, "--logger", "zap",
                    "--log-outputs", "stderr", "--log-level", "warn"]
            with open(log, "ab") as output:
                self.processes.append(subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=output, stderr=output))
        self.leader_url(START_TIMEOUT_S)
        return self

    def leader_url(self, timeout_s: float = 20.0) -> str:
        """The client URL of the member that leads (polls until ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        problem = "no reply"
        while time.monotonic() < deadline:
            for process, log in zip(self.processes, self.logs):
                if process.poll() is not None:
                    raise PeerError(f"etcd member exited with {process.returncode}; "
                                    f"log: {log_tail(log)}")
            for url in self.client_urls:
                try:
                    status = _post_json(f"{url}/v3/maintenance/status", {}, 2.0)
                except (OSError, ValueError) as error:
                    problem = f"{url}: {error}"
                    continue
                leader = status.get("leader")
                if leader and leader == status.get("header", {}).get("member_id"):
                    return url
            time.sleep(0.1)
        raise PeerError(f"etcd: no leader within {timeout_s} s ({problem}); "
                        f"log: {log_tail(self.logs[0])}")

    def load(self, workload: loadgen.Workload) -> dict:
        """Run ``workload`` from a separate load process against the leader."""
        leader = self.leader_url()
        log = self.directory / "load.log"
        process = python_child(_MODULE, [
            "load", "--url", leader, "--size", str(workload.size),
            "--duration-s", str(workload.duration_s), "--version", self.version,
            *(["--inflight", str(workload.inflight)] if workload.rate is None
              else ["--rate", str(workload.rate)])], log)
        try:
            timeout_s = workload.warmup_s + workload.duration_s + 2 * DRAIN_S + 60.0
            result = LineReader(process.stdout, "etcd load process").read(timeout_s)
        except PeerError as error:
            raise PeerError(f"{error}; log: {log_tail(log)}") from error
        finally:
            stop_process(process)
        if "error" in result:
            raise PeerError(f"etcd load process: {result['error']}")
        return result

    def check_perf(self, load: str = "s", timeout_s: float = 180.0) -> dict:
        """``etcdctl check perf --load=load`` against the cluster, parsed (60 s of etcd's own
        load): ``{"load", "passed", "writes_per_s", "slowest_s", "stddev_s", "output"}``."""
        if load not in CHECK_PERF_LOADS:
            raise loadgen.ConfigError("load", f"must be one of {CHECK_PERF_LOADS}, not {load!r}")
        if shutil.which("etcdctl") is None:
            return {"load": load, "skipped": "etcdctl is not installed (Debian: etcd-client)"}
        try:
            finished = subprocess.run(
                ["etcdctl", "--endpoints", ",".join(self.client_urls), "check", "perf",
                 f"--load={load}"], capture_output=True, text=True, timeout=timeout_s,
                env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return {"load": load, "skipped": f"etcdctl check perf took over {timeout_s} s"}
        return parse_check_perf(load, finished.stdout + finished.stderr)

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)
        self.processes = []
        shutil.rmtree(self.directory, ignore_errors=True)


def parse_check_perf(load: str, output: str) -> dict:
    """The figures of ``etcdctl check perf`` output; missing ones are None."""
    def number(pattern: str) -> float | None:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else None

    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return {"load": load,
            "passed": bool(lines) and lines[-1] == "PASS",
            "writes_per_s": number(r"Throughput (?:is|too low:) (\d+(?:\.\d+)?) writes/s"),
            "slowest_s": number(r"Slowest request took (?:too long: )?(\d+(?:\.\d+)?)s"),
            "stddev_s": number(r"Stddev (?:is|too high:) (\d+(?:\.\d+)?)s"),
            "output": " | ".join(line for line in lines[-6:] if "%" not in line)}


def run(workdir: str, *, size: int, inflight: int | None, rate: float | None,
        duration_s: float, durable: bool = True) -> dict:
    """One measured run on a fresh 3-member cluster; ``{"system", "skipped"}`` when etcd is
    missing or cannot start. ``durable`` must be True: etcd always fsyncs."""
    if durable is not True:
        raise loadgen.ConfigError("durable", "etcd has no non-durable mode; it always fsyncs")
    workload = loadgen.make_workload(size=size, inflight=inflight, rate=rate,
                                     duration_s=duration_s, inflight_max=INFLIGHT_MAX)
    return _trials(workdir, [workload])[0]


def peak(workdir: str, *, size: int = 16, duration_s: float = 5.0,
         inflights: tuple[int, ...] = PEAK_INFLIGHTS, check_perf_load: str | None = None) -> dict:
    """Closed-loop runs at increasing in-flight counts on one cluster; the best, with
    ``peak_trials``. With ``check_perf_load`` (e.g. ``"l"``), ``etcdctl check perf`` runs too
    (60 s) and its figures go in ``check_perf``."""
    if not inflights:
        raise loadgen.ConfigError("inflights", "must not be empty")
    if check_perf_load is not None and check_perf_load not in CHECK_PERF_LOADS:
        raise loadgen.ConfigError("check_perf_load", f"must be one of {CHECK_PERF_LOADS}")
    workloads = [loadgen.make_workload(size=size, inflight=n, rate=None, duration_s=duration_s,
                                       inflight_max=INFLIGHT_MAX) for n in inflights]
    return loadgen.best_of(_trials(workdir, workloads, check_perf_load))


def check_perf(workdir: str, load: str = "s") -> dict:
    """``etcdctl check perf --load=load`` on a fresh cluster (about a minute)."""
    if load not in CHECK_PERF_LOADS:
        raise loadgen.ConfigError("load", f"must be one of {CHECK_PERF_LOADS}, not {load!r}")
    reason = available()
    if reason is not None:
        return {"load": load, "skipped": reason}
    cluster = Cluster(workdir)
    try:
        try:
            cluster.start()
        except PeerError as error:
            return {"load": load, "skipped": f"cannot start: {error}"}
        return cluster.check_perf(load)
    finally:
        cluster.close()


def _trials(workdir: str, workloads: list[loadgen.Workload],
            check_perf_load: str | None = None) -> list[dict]:
    reason = available()
    if reason is not None:
        return [skipped(SYSTEM, reason)]
    cluster = Cluster(workdir)
    try:
        try:
            cluster.start()
        except (PeerError, OSError, subprocess.SubprocessError) as error:
            return [skipped(SYSTEM, f"cannot start: {error}")]
        results = [cluster.load(workload) for workload in workloads]
        if check_perf_load is not None:
            extra = cluster.check_perf(check_perf_load)
            for result in results:
                result["check_perf"] = extra
        return results
    finally:
        cluster.close()


# ---------------------------------------------------------------------------------------------
# The load process.


async def _load(url: str, workload: loadgen.Workload, etcd_version: str) -> dict:
    import aiohttp

    from pyraft.bench.load import run_load

    def encode(data: bytes) -> str:
        return base64.b64encode(data).decode()

    bodies = [json.dumps({"key": encode(f"pyraft-bench/{key:04d}".encode()),
                          "value": encode(loadgen.payload(workload.size, key))}).encode()
              for key in range(KEYS)]
    put_url = f"{url}/v3/kv/put"
    headers = {"Content-Type": "application/json"}
    connections = workload.inflight if workload.inflight is not None else OPEN_OUTSTANDING_MAX
    connector = aiohttp.TCPConnector(limit=connections + 4)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    counter = [0]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        watch: loadgen.ScheduleWatch | None = None

        async def unit() -> None:
            if watch is not None:
                watch.started()
            body = bodies[counter[0] % KEYS]
            counter[0] += 1
            async with session.post(put_url, data=body, headers=headers) as response:
                reply = await response.read()
                if response.status != 200 or b'"header"' not in reply:
                    raise PeerError(f"HTTP {response.status}: {reply[:200]!r}")

        async def once(shape: loadgen.Workload):
            return await run_load(unit, inflight=shape.inflight or 1, rate=shape.rate,
                                  duration_s=shape.duration_s, drain_s=DRAIN_S,
                                  outstanding_max=OPEN_OUTSTANDING_MAX)

        await once(workload.warmup())
        if workload.rate is not None:
            watch = loadgen.ScheduleWatch(workload.rate)
        seen = await once(workload)
    missed = None if watch is None else watch.missed
    notes = (f"etcd {etcd_version}: {MEMBERS} members on 127.0.0.1, default settings (WAL fsync "
             f"before every acknowledgement); load from a separate process over the v3 JSON "
             f"gateway (POST /v3/kv/put to the leader, aiohttp, one connection per write in "
             f"flight), {KEYS} keys round robin; discarded warm-up of {workload.warmup_s:.2f} s "
             f"first")
    if missed is not None:
        notes += (f"; {missed} writes sent more than {loadgen.LATE_THRESHOLD_MS} ms after their "
                  f"intended time")
    if seen.first_error is not None:
        notes += f"; first error: {seen.first_error}"
    result = make_result(system=SYSTEM, version=etcd_version, mode=MODE,
                         workload=workload.describe(api=API, members=MEMBERS,
                                                    outstanding_max=OPEN_OUTSTANDING_MAX),
                         writes=seen.writes, errors=seen.errors, elapsed_s=seen.elapsed_s,
                         latencies_s=seen.latencies_s, done_at_s=seen.done_at_s, notes=notes)
    result["missed_schedule"] = missed
    result["warmup_s"] = workload.warmup_s
    return result


def _load_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE} load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--inflight", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--version", default="unknown")
    args = parser.parse_args(argv)
    try:
        workload = loadgen.make_workload(size=args.size, inflight=args.inflight, rate=args.rate,
                                         duration_s=args.duration_s, inflight_max=INFLIGHT_MAX)
    except ValueError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return 2
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(_load(args.url, workload, args.version))
    else:
        result = uvloop.run(_load(args.url, workload, args.version))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["load"]:
        sys.exit(f"usage: python -m {_MODULE} load --url URL --size N "
                 f"(--inflight N | --rate R) --duration-s S")
    sys.exit(_load_main(sys.argv[2:]))
