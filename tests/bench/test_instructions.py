"""``pyraft.bench.instructions``: instructions per write counted by callgrind.

The default run checks the parts without valgrind: the child's protocol (it runs the real
three-member cluster natively here), the parsing of callgrind's output and the refusals;
``--soak`` counts for real when valgrind is installed."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from pyraft.bench import instructions


def _converse(*argv: str) -> None:
    """Run the counted child natively with ``argv`` through the protocol ``count`` speaks
    with it: READY, go (counting starts), DONE, go (it ends), exit status 0."""
    with subprocess.Popen([sys.executable, "-m", "pyraft.bench.instructions", "--child",
                           *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            for word in ("READY", "DONE"):
                assert child.stdout.readline() == word + "\n"
                child.stdin.write("go\n")
                child.stdin.flush()
            assert child.wait(60) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)


def test_the_child_writes_between_ready_and_done(tmp_path):
    # natively, a short tick and election (callgrind's settings take 5-10 s to elect)
    _converse("--writes", "30", "--inflight", "4", "--data", str(tmp_path), "--tick-ms", "20",
              "--election-ms", "200")
    # three durable members wrote there: the warm-up and the 30 counted writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m1", "m2", "m3"]


def test_the_floor_child_writes_to_a_member_that_does_no_work():
    """``--null`` (the floor): the same protocol, no cluster, no data directory."""
    _converse("--null", "--writes", "30", "--inflight", "4")


def test_the_null_member_settles_every_queued_write_on_the_next_turn():
    async def body() -> None:
        loop = asyncio.get_running_loop()
        member = instructions.NullMember(loop)
        writes = [asyncio.ensure_future(member.replicate(b"x")) for _ in range(5)]
        await asyncio.sleep(0)  # the writes are queued, none is settled yet
        assert not any(w.done() for w in writes)
        await asyncio.sleep(0)  # the settling turn
        await asyncio.sleep(0)  # the writers resume
        assert [w.result() for w in writes] == [None] * 5
        await asyncio.wait_for(instructions.write_load(member, 100, 7), 5)

    asyncio.run(body())


def test_callgrind_totals_are_read_and_their_absence_is_an_error():
    text = "events: Ir\nsummary: 0\ntotals: 314159265\n"
    assert instructions.parse_totals(text) == 314159265
    with pytest.raises(instructions.InstructionsError):
        instructions.parse_totals("events: Ir\n")


def test_without_valgrind_the_count_says_why(monkeypatch):
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    assert "valgrind" in (instructions.available() or "")
    with pytest.raises(instructions.InstructionsError, match="apt install valgrind"):
        instructions.count("compiled", writes=10)
    assert instructions.main(["--writes", "10"]) == 2


def test_a_follower_is_run_under_callgrind_counting_only_when_told(monkeypatch):
    member = instructions._CountedMember(2, "127.0.0.1:1", {1: "127.0.0.1:2", 2: "127.0.0.1:1"},
                                         None, extra_args=["--standby"])
    member.out = "/tmp/out"
    args = member.arguments()
    assert args[:4] == ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                        "--callgrind-out-file=/tmp/out"]
    assert args[4:7] == [sys.executable, "-m", "pyraft.testing.member"]
    assert args[-1] == "--standby"
    monkeypatch.setattr(instructions.shutil, "which", lambda tool: None)
    with pytest.raises(instructions.InstructionsError, match="apt install valgrind"):
        instructions.follower_count("compiled", writes=10)
    assert instructions.main(["--follower", "--writes", "10"]) == 2


def test_the_child_needs_a_directory():
    with pytest.raises(SystemExit):
        instructions.main(["--child"])


def test_a_count_with_its_floor_says_what_each_build_adds_and_the_ceiling(monkeypatch,
                                                                          capsys):
    """``bounded``: both builds and the floor of the same load, counted as ``count`` does;
    what each build adds above the floor, and the pure count over the floor (``ceiling``)."""
    counts = {("compiled", False): [14_000.0, 14_200.0], ("pure", False): [30_000.0, 30_400.0],
              ("compiled", True): [11_000.0]}
    seen = []

    def count(build, writes, inflight, keep=None, null=False):
        seen.append((build, writes, inflight, null))
        return counts[build, null].pop(0)

    monkeypatch.setattr(instructions, "count", count)
    monkeypatch.setattr(instructions, "available", lambda: None)
    result = instructions.bounded(writes=512, rounds=2, inflight=256)
    assert seen == [("compiled", 512, 256, False), ("pure", 512, 256, False)] * 2 + [
        ("compiled", 512, 256, True)]
    assert result["compiled"]["median"] == 14_100 and result["pure"]["median"] == 30_200
    assert result["floor"] == 11_000
    assert result["above_floor"] == {"compiled": 3_100, "pure": 19_200,
                                     "ratio": pytest.approx(3_100 / 19_200)}
    assert result["ceiling"] == pytest.approx(30_200 / 11_000)
    counts.update({("compiled", False): [14_000.0], ("pure", False): [30_000.0],
                   ("compiled", True): [11_000.0]})
    assert instructions.main(["--writes", "512", "--inflight", "256", "--rounds", "1",
                              "--floor"]) == 0
    printed = capsys.readouterr().out
    assert "floor (the same load, a member that does no work): 11,000 per write" in printed
    assert "above the floor: compiled 3,000, pure 19,000" in printed
    assert "ceiling" in printed and "2.73" in printed
    with pytest.raises(SystemExit):  # the floor is of the three members' load, not one's
        instructions.main(["--follower", "--floor"])


@pytest.mark.soak
@pytest.mark.parametrize("follower", [False, True], ids=["three members", "one follower"])
def test_instructions_are_counted_per_build(tmp_path, follower):
    if instructions.available() is not None:
        pytest.skip(instructions.available())
    if follower:  # one follower process: well below the three members' and the load's
        writes, prefix, most = 200, "callgrind.follower", 1_000_000
        result = instructions.followers(writes=writes, rounds=1, keep=str(tmp_path))
    else:
        writes, prefix, most = 60, "callgrind", 100_000_000
        result = instructions.instructions(writes=writes, rounds=1, keep=str(tmp_path))
    for build in ("compiled", "pure"):
        assert 10_000 < result[build]["median"] < most
        # --keep: callgrind's own output of that measurement, whose total is the figure's
        kept = (tmp_path / f"{prefix}.{build}.1").read_text()
        assert instructions.parse_totals(kept) / writes == result[build]["median"]
    assert result["ratio"] == result["compiled"]["median"] / result["pure"]["median"] < 1
    if not follower:
        base = instructions.floor(writes=60)
        assert 1_000 < base < result["compiled"]["median"]  # pyraft's work adds to the load's
