"""The ``pyraft`` command.

Subcommands grow with the project; today: ``pyraft info`` (versions and which kernels run).
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
    for name in ("index", "phi"):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyraft", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions and the kernels in use")
    info.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
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
