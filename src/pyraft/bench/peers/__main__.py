"""``python -m pyraft.bench.peers`` — measure the peers alone and print one JSON line each.

Examples::

    python -m pyraft.bench.peers pysyncobj --inflight 256 --duration-s 3
    python -m pyraft.bench.peers etcd --rate 500 --size 1024
    python -m pyraft.bench.peers pysyncobj --peak --journal
    python -m pyraft.bench.peers etcd --check-perf s

``--full`` keeps the series and the latency sample (left out by default to keep lines short).
The suite's own command (``pyraft bench peers``) is the place for reports with ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from pyraft.bench.peers import etcd_peer, pysyncobj_peer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyraft.bench.peers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=("pysyncobj", "etcd"))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--inflight", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None, help="open loop: writes/s")
    parser.add_argument("--duration-s", type=float, default=3.0)
    parser.add_argument("--journal", action="store_true", help="pysyncobj: use a journal file")
    parser.add_argument("--peak", action="store_true", help="try increasing in-flight counts")
    parser.add_argument("--check-perf", choices=etcd_peer.CHECK_PERF_LOADS,
                        help="etcd: run etcdctl check perf (60 s) instead")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    inflight = args.inflight if args.inflight is not None or args.rate is not None else 1
    with tempfile.TemporaryDirectory(prefix="pyraft-peers-") as workdir:
        if args.check_perf is not None:
            if args.system != "etcd":
                parser.error("--check-perf is for etcd")
            result = etcd_peer.check_perf(workdir, args.check_perf)
        elif args.system == "pysyncobj":
            result = (pysyncobj_peer.peak(workdir, size=args.size, duration_s=args.duration_s,
                                          journal=args.journal) if args.peak else
                      pysyncobj_peer.run(workdir, size=args.size, inflight=inflight,
                                         rate=args.rate, duration_s=args.duration_s,
                                         journal=args.journal))
        else:
            result = (etcd_peer.peak(workdir, size=args.size, duration_s=args.duration_s)
                      if args.peak else
                      etcd_peer.run(workdir, size=args.size, inflight=inflight, rate=args.rate,
                                    duration_s=args.duration_s))
    if not args.full:
        result.pop("series", None)
        result.pop("latency_sample_ms", None)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
