"""Real member processes on 127.0.0.1 over TCP and TLS: election, replication, SIGKILL of the
leader with no acknowledged write lost, restart with WAL recovery, membership changes under
load, leadership transfer, read barriers on followers, lease status.

Each member is ``python -m pyraft.testing.member`` (built from a ``ClusterConfig`` as users
build theirs) with a durable data directory; the test talks to it through its JSON-lines
control port. The members' election timeout is set here (``ELECTION_MS``): these tests were
written for it, below the configuration's default. Only processes this test started are
signalled, by their own pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pyraft.testing.processes import Member, free_port, leader, start_cluster, wait_for, write
from pyraft.transport.tcp import member_identity

#: the members' lower election timeout (the upper is twice it)
ELECTION_MS = 150


@pytest.fixture
def tls_files(tmp_path):
    """Per member: a certificate naming 127.0.0.1 and its identity (``member-<id>.pyraft``,
    checked at every handshake by default), its key, and the CA."""
    import trustme
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(ca_path)
    files = {}
    for member in (1, 2, 3):
        cert = ca.issue_cert("127.0.0.1", member_identity(member))
        paths = [tmp_path / f"member{member}.pem", tmp_path / f"member{member}.key"]
        cert.cert_chain_pems[0].write_to_path(paths[0])
        cert.private_key_pem.write_to_path(paths[1])
        files[member] = (str(paths[0]), str(paths[1]), str(ca_path))
    return files


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_sigkill_of_the_leader_loses_no_acknowledged_write(tmp_path, transport, request):
    tls = request.getfixturevalue("tls_files") if transport == "tls" else None
    peers, members = start_cluster(tmp_path, 3, tls, election_ms=ELECTION_MS)
    try:
        acknowledged = [f"w{i}" for i in range(30)]
        for text in acknowledged:
            write(members, text)
        old = leader(members)
        old.kill()
        survivors = [m for m in members if m is not old]
        new = leader(survivors)
        assert new is not old
        more = [f"after{i}" for i in range(20)]
        for text in more:
            write(survivors, text)
        # restart the killed member from its data directory: WAL recovery, then catch-up
        old.start()
        items = wait_for(lambda: (a := old.call("items", barrier=True))["ok"] and
                         len(a["items"]) >= 50 and a["items"])
        assert items[:50] == acknowledged + more
        for member in members:
            answer = member.call("items", barrier=True)
            assert answer["items"][:50] == acknowledged + more
    finally:
        for member in members:
            member.stop()


def test_five_members_transfer_barrier_lease_and_membership(tmp_path):
    peers, members = start_cluster(tmp_path, 5, election_ms=ELECTION_MS)
    joining = None
    try:
        for i in range(20):
            write(members, f"x{i}")
        current = leader(members)
        assert current.call("lease")["valid"] in (True, False)
        wait_for(lambda: current.call("lease")["valid"])
        follower = next(m for m in members if m is not current)
        assert follower.call("barrier")["ok"]
        assert len(follower.call("items")["items"]) == 20
        target = next(m for m in members if m is not current and m is not follower)
        assert current.call("transfer", id=target.id)["ok"]
        assert leader(members) is target
        # add a sixth member under write load, then remove another one
        peers[6] = f"127.0.0.1:{free_port()}"
        joining = Member(6, peers[6], peers, tmp_path / "m6", join=True,
                         election_ms=ELECTION_MS).start()
        adding = target.call("add_member", id=6, address=peers[6])
        assert adding["ok"], adding
        for i in range(10):
            write(members, f"y{i}")
        assert wait_for(lambda: len(joining.call("items", barrier=True)["items"]) == 30)
        removed = next(m for m in members if m is not target)
        assert target.call("remove_member", id=removed.id)["ok"]
        status = target.call("status")
        assert removed.id not in [m[0] for m in status["members"]]
        assert 6 in [m[0] for m in status["members"] if m[2]]
        write([m for m in members if m is not removed] + [joining], "after-removal")
    finally:
        for member in members + ([joining] if joining else []):
            member.stop()


def test_a_member_of_another_cluster_is_refused(tmp_path):
    peers, members = start_cluster(tmp_path, 3, election_ms=ELECTION_MS)
    stranger = None
    try:
        write(members, "ours")
        # a member configured for cluster 99 that believes it belongs here
        port = free_port()
        stranger_peers = dict(peers)
        stranger_peers[9] = f"127.0.0.1:{port}"
        # it campaigns quickly: its election timeout is below the default request timeout,
        # which its --config file lowers to match (connect <= request <= election timeout)
        settings = tmp_path / "stranger.json"
        settings.write_text(json.dumps({"request_timeout_ms": 60, "connect_timeout_ms": 50}))
        args = [sys.executable, "-m", "pyraft.testing.member", "--id", "9", "--listen",
                stranger_peers[9], "--peers", ",".join(f"{m}={a}" for m, a in
                                                       stranger_peers.items()),
                "--cluster-id", "99", "--election-ms", "60", "--config", str(settings)]
        stranger = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        assert stranger.stdout.readline().startswith("ready")
        time.sleep(1.0)  # it campaigns and sends to our members, who must refuse it
        current = leader(members)
        assert current.call("status")["term"] == leader(members).call("status")["term"]
        write(members, "still-ours")
        items = current.call("items", barrier=True)["items"]
        assert items == ["ours", "still-ours"]
    finally:
        if stranger is not None:
            stranger.send_signal(signal.SIGKILL)
            stranger.wait(10)
            stranger.stdout.close()
            stranger.stderr.close()
        for member in members:
            member.stop()


def test_standby_member_never_leads_after_leader_kills(tmp_path):
    peers = {m: f"127.0.0.1:{free_port()}" for m in (1, 2, 3)}
    members = [Member(m, peers[m], peers, tmp_path / f"m{m}", election_ms=ELECTION_MS,
                      extra_args=["--standby"] if m == 3 else []).start() for m in peers]
    try:
        write(members, "a")
        for _ in range(2):
            current = leader(members)
            assert current.id != 3
            current.kill()
            survivors = [m for m in members if m.control is not None]
            write(survivors, "after-kill")  # member 3 votes but never leads
            assert leader(survivors).id != 3
            current.start()
            # let it catch up: with a standby member, the next election needs its log
            commit = leader(survivors).call("status")["commit"]
            wait_for(lambda m=current, c=commit: m.call("status")["applied"] >= c)
        assert leader(members).id != 3
    finally:
        for member in members:
            member.stop()


def test_membership_changes_under_concurrent_writes(tmp_path):
    import threading

    peers, members = start_cluster(tmp_path, 3, election_ms=ELECTION_MS)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer():
        for i in range(2000):
            if stop.is_set():
                return
            try:
                write(members, f"load{i}", attempts=50)
                acknowledged.append(f"load{i}")
            except (AssertionError, OSError):
                pass  # not acknowledged: it may or may not be in the log

    joining = None
    try:
        write(members, "start")
        lock = threading.Lock()
        original_call = Member.call

        def locked_call(self, op, **fields):  # the writer and the test share connections
            with lock:
                return original_call(self, op, **fields)

        Member.call = locked_call
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            peers[4] = f"127.0.0.1:{free_port()}"
            joining = Member(4, peers[4], peers, tmp_path / "m4", join=True,
                             election_ms=ELECTION_MS).start()
            assert leader(members).call("add_member", id=4, address=peers[4])["ok"]
            removed = next(m for m in members if m is not leader(members))
            assert leader(members).call("remove_member", id=removed.id)["ok"]
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join(60)
            Member.call = original_call
        assert len(acknowledged) > 20
        remaining = [m for m in members if m is not removed] + [joining]
        items = leader(remaining).call("items", barrier=True)["items"]
        assert set(acknowledged) <= set(items)
        joined = wait_for(lambda: (a := joining.call("items", barrier=True))["ok"] and
                          set(acknowledged) <= set(a["items"]))
        assert joined
    finally:
        for member in members + ([joining] if joining else []):
            member.stop()


def test_dead_members_are_removed_automatically(tmp_path):
    peers, members = start_cluster(tmp_path, 5, extra_args=["--failure-dead-ms", "600"],
                                   election_ms=ELECTION_MS)
    try:
        write(members, "before")
        current = leader(members)
        dead = [m for m in members if m is not current][:2]
        for member in dead:
            member.kill()
        alive = [m for m in members if m not in dead]

        def voters():
            status = leader(alive).call("status")
            return {m[0] for m in status["members"] if m[2]}

        assert wait_for(lambda: voters() == {m.id for m in alive}, timeout=20)
        write(alive, "after")  # a majority of the new configuration: still available
        assert leader(alive).call("items", barrier=True)["items"] == ["before", "after"]
    finally:
        for member in members:
            member.stop()
