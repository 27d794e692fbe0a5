"""The ``pyraft`` command.

Subcommands grow with the project; today: ``pyraft info`` (versions and which kernels run)
``pyraft playground`` (a local cluster to watch), ``pyraft node`` (a member of the key-value
service), ``pyraft kv`` and ``pyraft status`` (its clients), ``pyraft wal inspect|repair DIR``
(an operator's tools for a write-ahead log) and ``pyraft bench`` (the benchmark suite).

An operator's mistake (a bad flag, file, address or ``PYRAFT_*`` variable: ``ConfigError``
raised anywhere while a command starts, or a command line argparse refuses) ends in one line
on stderr naming it and what to do, and exit status 2; ``--debug`` (before or after the
subcommand) prints the traceback too. Any other exception is a bug and keeps its traceback.

The command line names one command, so only that command's arguments are built (and only its
modules imported): ``pyraft kv get`` does not import the server, the runtime or numpy, and
starts in about half the time. ``build_parser()`` with no argument builds them all.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback

import pyraft
import raftcore
from pyraft.errors import ConfigError


def _info() -> dict[str, object]:
    import raftcore.crc
    import raftcore.framing

    kernels: dict[str, str] = {"crc": raftcore.crc.IMPLEMENTATION,
                               "framing": raftcore.framing.IMPLEMENTATION}
    for name in ("clock", "index", "phi", "wal"):
        try:
            module = __import__(f"raftcore.{name}", fromlist=["IMPLEMENTATION"])
        except ImportError as exc:  # surfaced, never hidden
            kernels[name] = f"missing: {exc}"
        else:
            kernels[name] = module.IMPLEMENTATION
    from pyraft import _compiled

    if os.environ.get("PYRAFT_NO_EXTENSIONS", "") not in ("", "0"):
        build = "pure (PYRAFT_NO_EXTENSIONS=1: kernels and core)"
    elif _compiled.PURE:
        build = "pure core over compiled kernels (PYRAFT_PURE_CORE=1)"
    else:
        build = "compiled"
    if raftcore.crc.PROFILE_GUIDED:
        build += ", profile-guided (RAFTCORE_PGO)"
    return {
        "pyraft": pyraft.__version__,
        "raftcore": raftcore.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "crc32c": raftcore.crc32c_implementation(),
        "kernels": kernels,
        "build": build,
        "profile_guided": raftcore.crc.PROFILE_GUIDED,
        # pyraft's own modules compiled from their .py source (see pyraft._compiled)
        "compiled": _compiled.status(),
    }


def _wal_directory(directory: str) -> str:
    """The write-ahead log ``directory`` names: itself, or ``directory/wal`` for the data
    directory of a member. ``ConfigError`` (naming the directory and what it holds) when it is
    neither."""
    if not os.path.exists(directory):
        raise ConfigError(directory, "no such directory: give a data directory of "
                                     "`pyraft node --data` or its wal directory")
    if not os.path.isdir(directory):
        raise ConfigError(directory, "is a file, not a directory: give a data directory of "
                                     "`pyraft node --data` or its wal directory")
    try:
        names = sorted(os.listdir(directory))
    except OSError as error:
        raise ConfigError(directory, f"cannot read it ({error.strerror})") from None
    if any(name.endswith(".wal") for name in names):
        return directory
    nested = os.path.join(directory, "wal")
    if os.path.isdir(nested):
        return nested
    found = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise ConfigError(directory, "is not a write-ahead log: it holds no segment (*.wal) and "
                                 "no wal directory, " + (f"but {found}" if names
                                                          else "nothing at all")
                      + "; give a data directory of `pyraft node --data` or its wal directory")


def _wal_inspect(directory: str) -> int:
    """List the segments of a write-ahead log and validate them, changing nothing."""
    from raftcore._wal import decode_segment_header
    from raftcore.framing import scan_entries
    from raftcore.wal import SEGMENT_HEADER_BYTES

    found = _wal_directory(directory)
    if found != directory:
        print(f"{found}:")
    names = sorted(n for n in os.listdir(found) if n.endswith(".wal"))
    if not names:
        print(f"{found}: no segments yet (an empty log)")
        return 0
    problems = 0
    for name in names:
        path = os.path.join(found, name)
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
        entries = (f"[{batch.first_index}, {batch.last_index}]" if len(batch)
                   else "(none)")
        print(f"{name}: cluster {cluster_id}, entries {len(batch)} {entries}, {end} bytes, "
              f"{state}")
    return 1 if problems else 0


def _wal_repair(directory: str, cluster_id: int, yes: bool) -> int:
    from raftcore import WalClusterMismatchError, WalCorruptionError
    from raftcore.wal import WriteAheadLog

    directory = _wal_directory(directory)
    try:
        with WriteAheadLog(directory, cluster_id=cluster_id) as log:
            print(f"{directory}: opens cleanly, entries [{log.first_index()}, "
                  f"{log.last_index()}]; torn tail cut: {log.recovery.torn_bytes} bytes")
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
        print(f"{directory}: entries [{log.first_index()}, {log.last_index()}]")
    return 0


class _Parser(argparse.ArgumentParser):
    """Refuses a bad command line in one line on stderr (argparse prints its usage too)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_debug(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="print the traceback of an error too (for a bug report)")


#: the commands and their help lines, in the order ``pyraft --help`` lists them
COMMANDS = {
    "info": "versions and the kernels in use",
    "playground": "a local cluster on 127.0.0.1 that shows elections and commits",
    "node": "run one member of the key-value service",
    "kv": "get, put, delete, cas on the service",
    "status": "every member in one table: role, term, indexes, lag, errors",
    "member": "list, add or remove members",
    "wal": "inspect or repair a write-ahead log directory",
    "bench": "benchmarks: kernels, cluster, builds, peers, goals, elections",
}
_ALL = "*"


def command_in(argv: list[str]) -> str | None:
    """The command an argument list names: its first argument that is not an option (the
    top-level options take no value), if that is a command."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(only: str | None = _ALL) -> argparse.ArgumentParser:
    """The ``pyraft`` command line: every command's arguments by default; ``only``: those
    of that command alone (None: of none), the others listed with their help line."""
    parser = _Parser(prog="pyraft", description=__doc__.replace("``", ""),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", help="print the version and exit",
                        version=f"pyraft {pyraft.__version__} (raftcore {raftcore.__version__}, "
                                f"Python {platform.python_version()})")
    _add_debug(parser, False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    subs = {}
    for name, help in COMMANDS.items():
        subs[name] = commands.add_parser(name, help=help, description=help)
        _add_debug(subs[name], argparse.SUPPRESS)  # the global flag's value unless given here
    if only == _ALL:
        for name, sub in subs.items():
            _add_arguments(name, sub)
    elif only is not None:
        _add_arguments(only, subs[only])
    return parser


def _add_arguments(name: str, sub: argparse.ArgumentParser) -> None:
    """The arguments of command ``name`` (importing the module that defines them)."""
    if name == "info":
        sub.add_argument("--json", action="store_true", help="print JSON")
    elif name == "playground":
        from pyraft.playground import add_arguments as playground_arguments

        playground_arguments(sub)
    elif name == "node":
        from pyraft.kv.node import add_arguments as node_arguments

        node_arguments(sub)
    elif name in ("kv", "status", "member"):
        from pyraft.kv import cli

        {"kv": cli.add_kv_arguments, "status": cli.add_status_arguments,
         "member": cli.add_member_arguments}[name](sub)
    elif name == "wal":
        _wal_arguments(sub)
    else:
        from pyraft.bench.cli import add_arguments as bench_arguments

        bench_arguments(sub)


def _wal_arguments(wal: argparse.ArgumentParser) -> None:
    wal_commands = wal.add_subparsers(dest="wal_command", required=True, metavar="ACTION")
    inspect = wal_commands.add_parser("inspect", help="list and validate segments (read only)")
    _add_debug(inspect, argparse.SUPPRESS)
    inspect.add_argument("directory", help="a WAL directory, or a data directory of "
                                           "`pyraft node --data` (its wal directory is read)")
    repair = wal_commands.add_parser("repair", help="truncate a damaged log at the damage")
    _add_debug(repair, argparse.SUPPRESS)
    repair.add_argument("directory", help="a WAL directory, or a data directory of "
                                          "`pyraft node --data` (its wal directory is repaired)")
    repair.add_argument("--cluster-id", type=int, default=0,
                        help="the cluster id the log belongs to (default 0)")
    repair.add_argument("--yes", action="store_true", help="really truncate")


def _refusal(args: argparse.Namespace, error: ConfigError) -> str:
    """The one line that reports an operator's mistake."""
    if args.command == "node":
        from pyraft.kv.node import refusal

        return refusal(args, error)
    where = f"pyraft {args.command}" + (f" {args.wal_command}" if args.command == "wal" else "")
    return f"{where}: {error}"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(command_in(argv)).parse_args(argv)
    try:
        return _run(args)
    except ConfigError as error:
        if args.debug:
            traceback.print_exc()
        print(_refusal(args, error), file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:
        # the reader of our output went away (`pyraft info | head -3`): nothing is wrong and
        # nothing is left to say; stdout goes to /dev/null so the exit's flush is quiet too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "bench":
        from pyraft.bench.cli import run as run_bench

        return run_bench(args)
    if args.command == "kv":
        from pyraft.kv.cli import run_kv

        return run_kv(args)
    if args.command == "status":
        from pyraft.kv.cli import run_status

        return run_status(args)
    if args.command == "member":
        from pyraft.kv.cli import run_member

        return run_member(args)
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
    facts = _info()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    for key, value in facts.items():
        if isinstance(value, dict):
            label = "kernel" if key == "kernels" else "module"
            width = max(14, *(len(label) + 1 + len(name) for name in value))
            for name, implementation in value.items():
                print(f"{label + ' ' + name:{width}} {implementation}")
        else:
            print(f"{key:14} {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
