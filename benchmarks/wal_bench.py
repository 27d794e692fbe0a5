"""Write-ahead log benchmarks against the raw disk, measured in the same run.

    python benchmarks/wal_bench.py [--dir DIR] [--mib 256] [--recovery-mib 1024] [--runs 3]

1. append throughput, no per-batch sync, 1 KiB entries in batches of 64, vs raw sequential
   os.write of the same bytes to a file in the same directory (goal: >= 70%);
2. durable appends: one 1 KiB entry per batch, append + sync, vs raw os.write + fdatasync of
   the same size into a preallocated file (goal: >= 80% of the raw rate);
3. group commit: 64 concurrent writers (coroutines on one event loop, as in the runtime),
   each appending one 1 KiB entry and awaiting its durability; one syncer issues one
   fdatasync in a worker thread for everything pending;
4. recovery: opening (and validating every record of) a log of --recovery-mib MiB.
Each figure is the median of --runs runs; the machine is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time

from raftcore.framing import encode_entries
from raftcore.wal import WriteAheadLog

ENTRY = os.urandom(1024)
COLD = {"enabled": True}


def fresh(base: str, name: str) -> str:
    path = os.path.join(base, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def raw_append_mb_s(base: str, mib: int, chunk: bytes) -> float:
    path = os.path.join(fresh(base, "raw"), "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    total = mib << 20
    started = time.perf_counter()
    written = 0
    while written < total:
        written += os.write(fd, chunk)
    os.fdatasync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return written / elapsed / 1e6


def wal_append_mb_s(base: str, mib: int, zero_fill: bool) -> float:
    path = fresh(base, "wal")
    batch_payloads = [ENTRY] * 64
    total = mib << 20
    with WriteAheadLog(path, sync="never", zero_fill=zero_fill) as log:
        started = time.perf_counter()
        written = 0
        while written < total:
            batch = encode_entries(log.last_index() + 1, 1, batch_payloads)
            log.append(batch)
            written += batch.nbytes
        fd_sync_started = time.perf_counter()
        for segment in log.segments[-1:]:
            fd = os.open(segment, os.O_RDONLY)
            os.fdatasync(fd)
            os.close(fd)
        elapsed = time.perf_counter() - started
        del fd_sync_started
    return written / elapsed / 1e6


def raw_sync_rate(base: str, count: int, size: int) -> float:
    path = os.path.join(fresh(base, "rawsync"), "raw.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, bytes(count * size + size))  # preallocated and zeroed, like a WAL segment
    os.fdatasync(fd)
    data = os.urandom(size)
    started = time.perf_counter()
    for i in range(count):
        os.pwrite(fd, data, i * size)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return count / elapsed


def wal_sync_rate(base: str, count: int) -> float:
    path = fresh(base, "walsync")
    with WriteAheadLog(path, sync="always") as log:
        # the segment is created (and zero-filled) by the first append: in steady state that
        # cost is spread over 64 MiB of entries, so it stays out of the timed loop
        log.append(encode_entries(1, 1, [ENTRY]))
        log.sync()
        started = time.perf_counter()
        for _ in range(count):
            log.append(encode_entries(log.last_index() + 1, 1, [ENTRY]))
            log.sync()
        elapsed = time.perf_counter() - started
    return count / elapsed


def group_commit_rate(base: str, writers: int, seconds: float) -> tuple[float, float]:
    """Entries/s and entries per fdatasync with ``writers`` concurrent writers, the way the
    runtime does it: writers are coroutines on one event loop that append and await their
    entry's durability; one syncer runs ``sync()`` in a worker thread for all that is
    pending, while the loop keeps appending."""
    import asyncio

    path = fresh(base, "group")
    log = WriteAheadLog(path, sync="always")
    log.append(encode_entries(1, 1, [ENTRY]))  # create the segment outside the measurement
    log.sync()

    async def run() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        waiters: list[tuple[int, asyncio.Future]] = []
        wake = asyncio.Event()
        counters = {"done": 0, "syncs": 0}
        stop = False

        async def writer() -> None:
            while not stop:
                index = log.append(encode_entries(log.last_index() + 1, 1, [ENTRY]))
                future = loop.create_future()
                waiters.append((index, future))
                wake.set()
                await future
                counters["done"] += 1

        async def syncer() -> None:
            while not stop:
                await wake.wait()
                wake.clear()
                durable = await loop.run_in_executor(None, log.sync)
                counters["syncs"] += 1
                keep = []
                for index, future in waiters:
                    if index <= durable:
                        future.set_result(None)
                    else:
                        keep.append((index, future))
                waiters[:] = keep
                if keep:
                    wake.set()

        tasks = [asyncio.ensure_future(writer()) for _ in range(writers)]
        tasks.append(asyncio.ensure_future(syncer()))
        await asyncio.sleep(0.2)
        done0, syncs0 = counters["done"], counters["syncs"]
        await asyncio.sleep(seconds)
        done1, syncs1 = counters["done"], counters["syncs"]
        stop = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return done1 - done0, syncs1 - syncs0

    try:
        import uvloop

        entries, syncs = uvloop.run(run())
    except ImportError:
        entries, syncs = asyncio.run(run())
    log.close()
    return entries / seconds, entries / max(1, syncs)


def recovery_mb_s(base: str, mib: int) -> float:
    path = fresh(base, "recovery")
    with WriteAheadLog(path, sync="never", zero_fill=False) as log:
        payloads = [ENTRY] * 256
        while log.last_index() * 1056 < (mib << 20):
            log.append(encode_entries(log.last_index() + 1, 1, payloads))
    os.sync()
    if COLD["enabled"]:
        try:  # read from the disk, not the page cache (root only; otherwise a warm read)
            with open("/proc/sys/vm/drop_caches", "w") as caches:
                caches.write("3\n")
        except OSError:
            COLD["enabled"] = False
    started = time.perf_counter()
    with WriteAheadLog(path, zero_fill=False) as log:
        elapsed = time.perf_counter() - started
        size = log.recovery.bytes
    return size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--recovery-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--syncs", type=int, default=2000)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="walbench-", dir=args.dir)
    try:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
              f"{platform.platform()}, python {platform.python_version()}, dir {base}")
        chunk = bytes(64 * (1024 + 32))
        rows = []
        for name, fn in [
            ("raw write MB/s", lambda: raw_append_mb_s(base, args.mib, chunk)),
            ("wal append MB/s (zero-filled segments)",
             lambda: wal_append_mb_s(base, args.mib, True)),
            ("wal append MB/s (fallocated segments)",
             lambda: wal_append_mb_s(base, args.mib, False)),
            ("raw 1 KiB write+fdatasync /s", lambda: raw_sync_rate(base, args.syncs, 1056)),
            ("wal 1 KiB append+sync /s", lambda: wal_sync_rate(base, args.syncs)),
            ("group commit, 64 writers, entries/s",
             lambda: group_commit_rate(base, 64, 2.0)[0]),
            (f"recovery of {args.recovery_mib} MiB, MB/s (page cache dropped first)",
             lambda: recovery_mb_s(base, args.recovery_mib)),
        ]:
            values = [fn() for _ in range(args.runs)]
            rows.append((name, statistics.median(values), values))
            print(f"{name:45} median {statistics.median(values):12,.1f}   runs "
                  + ", ".join(f"{v:,.1f}" for v in values), flush=True)
        if not COLD["enabled"]:
            print("(could not drop the page cache: the recovery figure is a warm read)")
        figures = {name: median for name, median, _ in rows}
        raw = figures["raw write MB/s"]
        print(f"append vs raw write: zero-filled {figures[rows[1][0]] / raw:.0%}, "
              f"fallocated {figures[rows[2][0]] / raw:.0%} (goal >= 70%)")
        print(f"durable append vs raw write+fdatasync: "
              f"{figures[rows[4][0]] / figures[rows[3][0]]:.0%} (goal >= 80%)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
