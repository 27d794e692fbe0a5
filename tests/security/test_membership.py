"""Members that must not disturb a cluster, with real member processes on 127.0.0.1.

A member removed from the configuration that keeps running, the same member restarted with
a wiped data directory (it believes it is a voter of the original configuration), and a
member started with another cluster id: over many election timeouts, none of them may raise
the term of the remaining members, win an election among them, or change their
configuration, and the cluster keeps committing writes. (Raft thesis 4.2.3: "servers
disregard RequestVote RPCs when they believe a current leader exists"; here pre-vote and
check-quorum give that protection, and the handshake refuses another cluster id.)
"""

from __future__ import annotations

import shutil
import signal
import time

from pyraft.testing.processes import Member, free_port, leader, start_cluster, wait_for, write

ELECTION_MS = 150  # the members' lower election timeout (--election-ms), set below
OBSERVE_S = 12 * ELECTION_MS / 1000  # several election timeouts (upper = 2 x lower)


def view(member: Member) -> tuple:
    status = member.call("status")
    return status["term"], status["leader"], sorted(m[0] for m in status["members"] if m[2])


def observe(members: list[Member], expected: tuple, seconds: float = OBSERVE_S) -> int:
    """Poll the members' (term, leader, voters) for ``seconds``: it must stay ``expected``;
    a write must commit meanwhile. Returns how many polls were made."""
    polls = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for member in members:
            assert view(member) == expected, (member.id, view(member), expected)
        polls += 1
        time.sleep(0.05)
    write(members, f"after {polls} polls")
    return polls


def stop_all(members) -> dict[int, str]:
    """Stop the processes; returns each one's stderr (its WARNING log)."""
    logs = {}
    for member in members:
        if member.process is None or member.control is None:  # never started, or killed
            continue
        if member.process.poll() is None:
            member.process.send_signal(signal.SIGTERM)
            try:
                member.process.wait(15)
            except Exception:  # noqa: BLE001 - last resort: our own process, by pid
                member.process.send_signal(signal.SIGKILL)
                member.process.wait(15)
        member._close()
        logs[member.id] = member.log()
    return logs


def test_a_removed_member_running_or_wiped_cannot_disturb_the_cluster(tmp_path):
    peers, members = start_cluster(tmp_path, 3, election_ms=ELECTION_MS)
    extra: list[Member] = []
    try:
        write(members, "first")
        current = leader(members)
        # every member caught up first: removing one while another lags would leave a
        # configuration whose quorum cannot commit the removal
        commit = current.call("status")["commit"]
        wait_for(lambda: all(m.call("status")["applied"] >= commit for m in members))
        removed = next(m for m in members if m is not current)
        remaining = [m for m in members if m is not removed]
        assert current.call("remove_member", id=removed.id)["ok"]
        voters = sorted(m.id for m in remaining)
        wait_for(lambda: all(view(m)[2] == voters for m in remaining))
        write(remaining, "after removal")
        expected = view(current)
        assert expected[1] == current.id
        # the removed member keeps running: its election timers keep firing
        observe(remaining, expected)
        assert removed.process.poll() is None  # it was running all along
        # it was cut off and campaigning (pre-vote), not quietly following
        assert removed.call("status")["role"] in ("pre-candidate", "candidate")
        # restarted with a wiped data directory: a cold start as a voter of {1, 2, 3}
        removed.kill()
        shutil.rmtree(tmp_path / f"m{removed.id}")
        again = Member(removed.id, peers[removed.id], peers, tmp_path / f"m{removed.id}",
                       election_ms=ELECTION_MS)
        extra.append(again.start())
        observe(remaining, expected)
        wiped = again.call("status")
        assert wiped["role"] in ("pre-candidate", "candidate") and wiped["leader"] is None
        assert view(current) == expected
    finally:
        stop_all(members + extra)


def test_a_member_of_another_cluster_is_refused_at_the_handshake(tmp_path):
    peers, members = start_cluster(tmp_path, 3, election_ms=ELECTION_MS)
    stranger = None
    try:
        write(members, "first")
        expected = view(leader(members))
        # every member has heard from the leader first (a member started last may still be
        # waiting out the leader's connection backoff): the stranger is the only change
        wait_for(lambda: all(view(m) == expected for m in members))
        # member 4 of cluster 2 believes the three members and itself form its cluster
        address = f"127.0.0.1:{free_port()}"
        stranger = Member(4, address, {**peers, 4: address}, tmp_path / "m4",
                          extra_args=["--cluster-id", "2"], election_ms=ELECTION_MS).start()
        observe(members, expected)
        assert stranger.call("status")["role"] != "leader"
    finally:
        logs = stop_all(members + ([stranger] if stranger else []))
    refusals = [line for member in members for line in logs[member.id].splitlines()
                if "refused connection" in line and "cluster id 2" in line]
    assert refusals, logs
