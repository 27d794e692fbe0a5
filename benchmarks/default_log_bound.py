"""How big the log of a consensus-only member gets: the default state machine's bound.

    python benchmarks/default_log_bound.py [--writes 1000000] [--data-dir DIR]

Three members in this process, each built as a user builds one with no state machine:
``RaftCluster.from_config(ClusterConfig(...).validate())``, TCP on 127.0.0.1 (ports chosen by
the system), in memory or, with ``--data-dir``, durable in ``DIR/m<id>`` with the defaults
(``sync="always"``). ``--writes`` small commands go to the leader through
``replicate_many`` (``--batch`` commands per call, ``--inflight`` calls at a time). Every
``--report-every`` writes, and at the end, it prints each member's log: entries held
(last - first + 1), their bytes (memory) or the WAL directory's size (disk: allocated and
apparent, segment count), and the process's peak RSS. It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import shutil
import time

from pyraft.cluster import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.testing.processes import free_port


def directory_size(path: str) -> tuple[int, int, int]:
    """(allocated bytes, apparent bytes, files) under ``path``."""
    allocated = apparent = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:  # a released segment leaving meanwhile
                continue
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return allocated, apparent, files


def describe(member: RaftCluster) -> str:
    storage = member.storage
    first, last = storage.first_index(), storage.last_index()
    entries = last - first + 1
    text = f"m{member.id}: log [{first}, {last}] {entries} entries"
    if member.config.data_dir is None:
        held = storage.entries(first, last + 1).nbytes if entries > 0 else 0
        text += f", {held / 1024:.0f} KiB in memory"
    else:
        wal = os.path.join(member.config.data_dir, "wal")
        allocated, apparent, files = directory_size(wal)
        snapshots = directory_size(os.path.join(member.config.data_dir, "snapshots"))
        text += (f", WAL {allocated / 2**20:.1f} MiB allocated ({apparent / 2**20:.1f} MiB "
                 f"apparent) in {files} segments, snapshots {snapshots[1]} bytes in "
                 f"{snapshots[2]} files")
    return text


async def leader_of(members: list[RaftCluster], timeout: float = 10.0) -> RaftCluster:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [m for m in members if m.is_leader]
        if leaders:
            return max(leaders, key=lambda m: m.term)
        await asyncio.sleep(0.01)
    raise TimeoutError("no leader")


async def run(args: argparse.Namespace) -> None:
    ports = {m: free_port() for m in (1, 2, 3)}
    peers = {m: f"127.0.0.1:{port}" for m, port in ports.items()}
    configs = []
    for m in peers:
        options = {}
        if args.data_dir:
            options["data_dir"] = os.path.join(args.data_dir, f"m{m}")
        if args.snapshot_entries:
            options["consensus_snapshot_entries"] = args.snapshot_entries
        configs.append(ClusterConfig(member_id=m, listen=peers[m], peers=peers,
                                     **options).validate())
    members = [RaftCluster.from_config(config) for config in configs]
    for member in members:
        await member.start()
    try:
        leader = await leader_of(members)
        payload = b"c" * args.payload_bytes
        written = 0
        longest = 0
        started = time.perf_counter()
        next_report = args.report_every
        while written < args.writes:
            sizes = []
            while written + sum(sizes) < args.writes and len(sizes) < args.inflight:
                sizes.append(min(args.batch, args.writes - written - sum(sizes)))
            await asyncio.gather(*(leader.replicate_many([payload] * size, timeout=60)
                                   for size in sizes))
            written += sum(sizes)
            longest = max(longest, *(m.storage.last_index() - m.storage.first_index() + 1
                                     for m in members))
            if written >= next_report:
                next_report += args.report_every
                print(f"after {written} writes ({time.perf_counter() - started:.1f} s): "
                      f"{describe(leader)}", flush=True)
        elapsed = time.perf_counter() - started
        for member in members:  # the followers apply what the leader committed
            await member.wait_for_applied(leader.commit_index, timeout=60)
        await asyncio.sleep(0.5)  # the last snapshot files are written and adopted
        print(f"{written} writes in {elapsed:.1f} s ({written / elapsed:,.0f} writes/s); the "
              f"longest log seen after a round: {longest} entries")
        for member in members:
            print("  " + describe(member) + (" (leader)" if member is leader else ""))
        print(f"  peak RSS of the process (three members): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        for member in members:
            await member.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="commands per replicate_many")
    parser.add_argument("--inflight", type=int, default=4, help="replicate_many calls at once")
    parser.add_argument("--payload-bytes", type=int, default=16)
    parser.add_argument("--data-dir", default=None, help="durable members here (default: "
                                                         "in memory)")
    parser.add_argument("--snapshot-entries", type=int, default=None,
                        help="consensus_snapshot_entries (default: ClusterConfig's)")
    parser.add_argument("--report-every", type=int, default=100_000)
    args = parser.parse_args()
    if args.data_dir:
        shutil.rmtree(args.data_dir, ignore_errors=True)
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{'durable in ' + args.data_dir if args.data_dir else 'in memory'}")
    try:
        asyncio.run(run(args))
    finally:
        if args.data_dir:
            shutil.rmtree(args.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
