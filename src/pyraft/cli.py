"""The ``pyraft`` command.

Subcommands grow with the project; today: ``pyraft info`` (versions and which kernels run)
``pyraft playground`` (a local cluster to watch), ``pyraft wal inspect|repair DIR`` (an
operator's tools for a write-ahead log) and ``pyraft bench`` (the benchmark suite).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import pyraft
import raftcore
import raftcore.crc
import raftcore.framing


def _info() -> dict[str, object]:
    kernels = {"crc": raftcore.crc.IMPLEMENTATION, "framing": raftcore.framing.IMPLEMENTATION}
    for name in ("index", "phi", "wal"):
        try:
            module = __import__(f"raftcore.{name}", fromlist=["IMPLEMENTATION"])
        except ImportError as exc:  # surfaced, never hidden
            kernels[name] = f"missing: {exc}"
        else:
            kernels[name] = module.IMPLEMENTATION
    return {
        "pyraft": pyraft.__version__,
        "raftcore": raftcore.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "crc32c": raftcore.crc32c_implementation(),
        "kernels": kernels,
    }


def _wal_inspect(directory: str) -> int:
    """List the segments of a write-ahead log and validate them, changing nothing."""
    import os

    from raftcore._wal import decode_segment_header
    from raftcore.framing import scan_entries
    from raftcore.wal import SEGMENT_HEADER_BYTES

    names = sorted(n for n in os.listdir(directory) if n.endswith(".wal"))
    if not names:
        print(f"{directory}: no segments")
        return 0
    problems = 0
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        try:
            cluster_id, first = decode_segment_header(data[:SEGMENT_HEADER_BYTES], path)
        except ValueError as exc:
            print(f"{name}: {exc}")
            problems += 1
            continue
        batch, end, error = scan_entries(memoryview(data)[SEGMENT_HEADER_BYTES:], first)
        rest = data[SEGMENT_HEADER_BYTES + end:]
        state = "ok" if error is None or not rest.strip(b"\0") else (
            f"stops: {getattr(error, 'reason', error)} at byte offset "
            f"{SEGMENT_HEADER_BYTES + end} of the file")
        problems += state != "ok"
        print(f"{name}: cluster {cluster_id}, entries {len(batch)} "
              f"[{batch.first_index}, {batch.last_index}], {end} bytes, {state}")
    return 1 if problems else 0


def _wal_repair(directory: str, cluster_id: int, yes: bool) -> int:
    from raftcore import WalClusterMismatchError, WalCorruptionError
    from raftcore.wal import WriteAheadLog

    try:
        with WriteAheadLog(directory, cluster_id=cluster_id) as log:
            print(f"{directory}: opens cleanly, entries [{log.first_index}, {log.last_index}]; "
                  f"torn tail cut: {log.recovery.torn_bytes} bytes")
            return 0
    except WalClusterMismatchError as exc:  # not damage: nothing to repair
        print(f"{directory}: belongs to cluster {exc.stored_cluster_id}, not cluster "
              f"{cluster_id}; nothing was changed (give --cluster-id "
              f"{exc.stored_cluster_id})")
        return 1
    except WalCorruptionError as exc:
        print(f"{directory}: {exc}")
        if not yes:
            print("Repairing truncates the log at that point and loses every entry after it "
                  "(other members can send them again). Run again with --yes to do it.")
            return 1
    with WriteAheadLog(directory, cluster_id=cluster_id, repair=True) as log:
        for line in log.recovery.repaired:
            print(f"repaired: {line}")
        print(f"{directory}: entries [{log.first_index}, {log.last_index}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyraft", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions and the kernels in use")
    info.add_argument("--json", action="store_true", help="print JSON")
    playground = commands.add_parser(
        "playground", help="a local cluster on 127.0.0.1 that shows elections and commits")
    from pyraft.playground import add_arguments as playground_arguments

    playground_arguments(playground)
    node = commands.add_parser("node", help="run one member of the key-value service")
    from pyraft.kv.node import add_arguments as node_arguments

    node_arguments(node)
    from pyraft.kv.cli import add_kv_arguments, add_status_arguments

    add_kv_arguments(commands.add_parser("kv", help="get, put, delete, cas on the service"))
    add_status_arguments(commands.add_parser("status", help="members, leader, indexes, lag"))
    wal = commands.add_parser("wal", help="inspect or repair a write-ahead log directory")
    wal_commands = wal.add_subparsers(dest="wal_command", required=True)
    inspect = wal_commands.add_parser("inspect", help="list and validate segments (read only)")
    inspect.add_argument("directory")
    repair = wal_commands.add_parser("repair", help="truncate a damaged log at the damage")
    repair.add_argument("directory")
    repair.add_argument("--cluster-id", type=int, default=0)
    repair.add_argument("--yes", action="store_true", help="really truncate")
    bench = commands.add_parser("bench", help="benchmarks: kernels, cluster, peers, goals, "
                                "elections")
    from pyraft.bench.cli import add_arguments as bench_arguments

    bench_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "bench":
        from pyraft.bench.cli import run as run_bench

        return run_bench(args)
    if args.command == "kv":
        from pyraft.kv.cli import run_kv

        return run_kv(args)
    if args.command == "status":
        from pyraft.kv.cli import run_status

        return run_status(args)
    if args.command == "node":
        from pyraft.kv.node import run as run_node

        return run_node(args)
    if args.command == "playground":
        from pyraft.playground import run as run_playground

        return run_playground(args)
    if args.command == "wal":
        if args.wal_command == "inspect":
            return _wal_inspect(args.directory)
        return _wal_repair(args.directory, args.cluster_id, args.yes)
    if args.command == "info":
        facts = _info()
        if args.json:
            print(json.dumps(facts, indent=2))
        else:
            for key, value in facts.items():
                print(f"{key:10} {value}")
        return 0
    parser.error(f"unknown command {args.command}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
