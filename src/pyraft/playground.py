"""``pyraft playground``: a local cluster on 127.0.0.1 in one command, to watch Raft work.

Starts N member processes (``python -m pyraft.cluster.process``) with durable logs in a
temporary directory (or in memory with ``--memory``), over TCP or TLS (``--transport tls``
makes throw-away certificates), then writes a small item every ``--interval`` seconds and
prints what happens: elections, the leader, commit and applied indexes per member. With
``--chaos S`` it kills the leader with SIGKILL every S seconds and restarts it from its data
directory, so failover and recovery can be watched. Ctrl+C (or ``--duration``) stops every
member it started and removes the temporary directory.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import time

from pyraft.testing.processes import Member, free_port, leader


def _tls_files(directory: str) -> tuple[str, str, str]:
    try:
        import trustme
    except ImportError as exc:
        raise SystemExit("--transport tls needs the 'trustme' package to make throw-away "
                         "certificates: pip install trustme") from exc
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = (f"{directory}/member.pem", f"{directory}/member.key", f"{directory}/ca.pem")
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    ca.cert_pem.write_to_path(paths[2])
    return paths


def run(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="pyraft-playground-")
    stopping = {"now": False}

    def request_stop(_signum, _frame):
        stopping["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    members: list[Member] = []
    try:
        tls = _tls_files(workdir) if args.transport == "tls" else None
        peers = {m: f"127.0.0.1:{free_port()}" for m in range(1, args.members + 1)}
        for member_id, address in peers.items():
            data = None if args.memory else f"{workdir}/member{member_id}"
            members.append(Member(member_id, address, peers, data, tls).start())
            print(f"member {member_id} listening on {address}"
                  + ("" if data is None else f", data in {data}"), flush=True)
        started = time.monotonic()
        current = leader(members)
        term = current.call("status")["term"]
        print(f"member {current.id} won the election for term {term} "
              f"(seen {(time.monotonic() - started) * 1000:.0f} ms after the last member "
              "started)", flush=True)
        written = 0
        next_chaos = time.monotonic() + args.chaos if args.chaos else None
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stopping["now"] and (deadline is None or time.monotonic() < deadline):
            live = [m for m in members if m.control is not None]
            now_leader = leader(live)
            status = now_leader.call("status")
            if now_leader is not current or status["term"] != term:
                print(f"leader is now member {now_leader.id} (term {status['term']})",
                      flush=True)
                current, term = now_leader, status["term"]
            answer = current.call("replicate", data=f"item {written}", timeout=2)
            if answer["ok"]:
                written += 1
            indexes = ", ".join(
                f"{m.id}:{m.call('status')['applied']}" if m.control else f"{m.id}:down"
                for m in members
            )
            print(f"wrote 'item {written - 1}' via member {current.id}: "
                  f"commit {current.call('status')['commit']}, applied per member [{indexes}]",
                  flush=True)
            if next_chaos is not None and time.monotonic() >= next_chaos:
                victim = current
                print(f"chaos: SIGKILL member {victim.id} (the leader)", flush=True)
                victim.kill()
                killed_at = time.monotonic()
                survivors = [m for m in members if m.control is not None]
                new = leader(survivors)
                print(f"member {new.id} leads after {(time.monotonic() - killed_at) * 1000:.0f}"
                      " ms; restarting the killed member from its log", flush=True)
                victim.start()
                next_chaos = time.monotonic() + args.chaos
            time.sleep(args.interval)
        print(f"stopping: {written} items written", flush=True)
        return 0
    finally:
        for member in members:
            member.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=int, default=3, help="how many members (default 3)")
    parser.add_argument("--memory", action="store_true", help="keep the logs in memory")
    parser.add_argument("--transport", choices=["tcp", "tls"], default="tcp")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between writes")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl+C)")
    parser.add_argument("--chaos", type=float, default=None,
                        help="SIGKILL the leader every this many seconds, then restart it")
