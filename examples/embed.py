"""Embedding pyraft: a replicated ledger of accounts on three members, in one process.

    python examples/embed.py [DATA_DIR [PORT PORT PORT]]

Typed commands, three members on 127.0.0.1 with durable logs in DATA_DIR (a temporary
directory by default), writes through whichever member leads, a read barrier on a follower,
and one member stopped and started again from its log.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from pyraft import RaftCluster
from pyraft.config import ClusterConfig
from pyraft.errors import NotLeaderError
from pyraft.storage.interpreter import Command, CommandInterpreter, handles
from pyraft.storage.state_machine import MemoryStateMachine


class LedgerCommand(Command):
    """The commands of the ledger (a family: their ids are unique within it)."""


class Deposit(LedgerCommand, id=1):
    account: str
    amount: int


class Withdraw(LedgerCommand, id=2):
    account: str
    amount: int


class Ledger(MemoryStateMachine, CommandInterpreter):
    """Balances by account, rebuilt on a restart from the last snapshot plus the log."""

    def __init__(self) -> None:
        super().__init__()
        self.balances: dict[str, int] = {}

    def apply(self, index: int, command: memoryview) -> object:
        return self.dispatch(command, index)  # decodes the command, calls its handler

    @handles(Deposit)
    def deposit(self, command: Deposit, index: int) -> int:
        self.balances[command.account] = self.balances.get(command.account, 0) + command.amount
        return self.balances[command.account]

    @handles(Withdraw)
    def withdraw(self, command: Withdraw, index: int) -> int | None:
        balance = self.balances.get(command.account, 0)
        if balance < command.amount:
            return None  # refused, on every member alike: the result says so
        self.balances[command.account] = balance - command.amount
        return self.balances[command.account]

    def build_snapshot(self) -> bytes:
        return json.dumps(self.balances).encode()

    def restore_snapshot(self, data: bytes) -> None:
        self.balances = json.loads(data) if data else {}


class Node:
    """One member and its state machine (kept typed: ``member.state_machine`` is the base)."""

    def __init__(self, member_id: int, peers: dict[int, str], data: Path) -> None:
        self.config = ClusterConfig(member_id=member_id, listen=peers[member_id], peers=peers,
                                    data_dir=str(data / f"member-{member_id}")).validate()
        self.ledger = Ledger()
        self.member = RaftCluster.from_config(self.config, state_machine=self.ledger)


async def write(nodes: dict[int, Node], command: LedgerCommand) -> object:
    """Replicate ``command`` through the leader, following it when leadership moves
    (``nodes``: the members running now)."""
    for _attempt in range(20):
        any_member = next(iter(nodes.values())).member
        leader = nodes[await any_member.wait_for_leader(timeout=10)].member
        try:
            return await leader.replicate(Ledger.encode(command), timeout=10)
        except NotLeaderError:  # it lost the lead meanwhile: ask again who leads
            await asyncio.sleep(0.1)
    raise RuntimeError("no leader accepted the write")


async def main(data: Path, ports: list[int]) -> None:
    peers = {member_id: f"127.0.0.1:{port}" for member_id, port in enumerate(ports, start=1)}
    nodes = {member_id: Node(member_id, peers, data) for member_id in peers}
    for node in nodes.values():
        await node.member.start()
    try:
        leader_id = await nodes[1].member.wait_for_leader(timeout=10)
        print(f"member {leader_id} leads")

        print("alice:", await write(nodes, Deposit(account="alice", amount=100)))
        print("alice:", await write(nodes, Withdraw(account="alice", amount=30)))
        print("refused:", await write(nodes, Withdraw(account="bob", amount=5)))

        # A follower refuses writes and names the leader; its reads go through a barrier.
        follower = next(n for n in nodes.values() if not n.member.is_leader)
        try:
            await follower.member.replicate(Ledger.encode(Deposit(account="bob", amount=1)))
        except NotLeaderError as error:
            print(f"member {follower.config.member_id}: {error}")
        await follower.member.apply_read_barrier(timeout=10)
        print(f"member {follower.config.member_id} reads alice:",
              follower.ledger.balances["alice"])

        # Stop that follower, write while it is down, start it again from its log.
        member_id = follower.config.member_id
        await nodes.pop(member_id).member.stop()
        await write(nodes, Deposit(account="bob", amount=7))
        restarted = nodes[member_id] = Node(member_id, peers, data)
        await restarted.member.start()
        await restarted.member.ensure_consistency(timeout=10)  # caught up with the leader
        print(f"member {member_id} after its restart:",
              dict(sorted(restarted.ledger.balances.items())))
    finally:
        for node in nodes.values():
            await node.member.stop()


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    chosen = [int(port) for port in sys.argv[2:5]] or [7001, 7002, 7003]
    asyncio.run(main(directory, chosen))
