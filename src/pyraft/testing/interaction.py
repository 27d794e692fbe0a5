"""Data-driven interaction tests for the Raft core, in the style of etcd-io/raft's
``testdata/*.txt`` (our own small parser and driver; no code is shared with etcd).

A script drives a handful of :class:`~pyraft.core.RaftNode` instances by hand: every tick,
every Ready and every message delivery is a command, and the file holds the rendered result
next to the command. The driver plays the runtime's part exactly as ``Ready`` documents it
(persist into a :class:`~pyraft.core.MemoryLogStorage`, send, apply, ``advance``), so a crash
loses precisely what a Ready had not yet handed over. Fault model: a message is lost only
when the script says so (``deliver-msgs drop=``), when either end is isolated at the time
it is delivered, or when its recipient is down (crashed, not yet restarted); messages are
never duplicated, and reordered only by the order in which the script delivers them.
Isolation is checked at delivery only: a message queued during an isolation and delivered
after ``heal`` arrives (a slow network), so deliver or drop such messages before healing
when that matters.

File format
-----------
A file is a sequence of test cases. Each case is::

    # comments: lines starting with '#', kept verbatim; blank lines between cases are kept
    command arg arg key=value key=1,2,3
    another-command arg
    ----
    expected output, one or more lines,
    ended by a blank line (or the end of the file)

- a case has one or more command lines, then a line ``----``, then the expected output;
  the output of a case is the outputs of its commands, in order;
- a command line is split like a shell line (``shlex``: quote an argument that holds
  spaces); ``key=value`` words are options, the others are positional arguments; a list is
  written with commas (``voters=1,2,3``), and ``key=`` is the empty list;
- rendered output never contains blank lines (a case whose commands have nothing to say
  prints ``ok``), so a blank line always ends the expected output. For hand-written
  outputs that need blank lines the parser also accepts etcd's convention: ``----`` twice
  opens the output and ``----`` twice closes it; the rewriter uses it whenever an output
  holds a blank line or a ``----`` line.

``parse_script`` reads a file's text into :class:`TestCase` objects, ``render_script`` writes
them back with new outputs (comments, blank lines and command lines are kept byte for byte),
and ``run_script`` does both: the test runner compares its result with the file, or writes
it back when regenerating expectations.

Commands
--------
Nodes are numbered from 1; ``ID...`` means one or more node ids.

``add-nodes N [voters=..] [learners=..] [standby=..] [election=10] [heartbeat=3]``
``[prevote=true] [checkquorum=true] [append-bytes-max=N]``
    create N nodes with the next free ids, each with a MemoryLogStorage bootstrapped with
    the configuration (voters default to the new ids). ``election`` is the lower election
    timeout; the randomized timeout is drawn from ``[election, 2 * election)``.
``campaign ID``; ``tick ID [N]``; ``tick-heartbeat ID`` (heartbeat-timeout ticks);
``tick-election ID`` (upper election-timeout ticks: a follower surely times out)
``propose ID DATA...``; ``propose-conf-change ID voters=.. [learners=..]``;
``add-member ID MEMBER``; ``remove-member ID MEMBER`` (``RaftNode.add_member``: a learner
that the leader warms up and promotes by itself; ``remove_member``)
``read-index ID CONTEXT``; ``transfer-leader FROM TO``
    local events; core errors render as ``error: <message>``.
``process-ready ID...``
    take each node's Ready, persist it, queue its messages, apply it, advance; render it.
``deliver-msgs [ID...] [drop=ID...]``
    deliver the queued messages addressed to ID... (all ids when none is given) and drop
    those addressed to the ``drop`` ids, in queue order per recipient.
``stabilize [ID...]``
    repeat process-ready and deliver-msgs (restricted to ID...) until nothing is left
    to do; at most ``STABILIZE_ROUNDS_MAX`` rounds.
``status ID``; ``raft-log ID``; ``raft-state``
    inspect a node's state, its log (index/term kind), or every node in one line each.
``isolate ID``; ``heal``
    drop every message from or to an isolated node when it is delivered / undo all that.
``crash ID``; ``restart ID``
    drop the node with everything it did not hand to a Ready; rebuild it from its storage.
    A down node receives nothing: messages queued for it when it crashes, and messages
    sent to it while it is down, are dropped (and listed) at the latest when it restarts.

Output
------
A handled Ready renders as ``> ID handling Ready NUMBER`` (``(must sync)`` when it asks for
a sync) followed by the parts it holds, in the order the runtime deals with them:
``soft state`` (role, leader), ``leadership lost`` (the term led, the reason, and the member
and term concerned), ``hard state`` (term, vote, commit), ``entries`` to persist,
``messages`` (sent at once: the leader's replication), ``messages after persistence``,
``committed`` entries applied, ``read states`` and membership ``events``. An entry renders
as ``index/term`` and its kind (``noop``, ``cmd "payload"``, ``conf voters=.. learners=..``);
a message as ``Message.describe()`` plus its read-index context. Deliveries render as
``> ID receiving messages`` and one line per message, ``dropped (why): ...`` for a lost one.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from pyraft.core import (
    Configuration,
    MemoryLogStorage,
    Message,
    MessageType,
    RaftNode,
    RaftOptions,
    Ready,
    Role,
)
from pyraft.errors import InvariantError, PyraftError
from raftcore.framing import KIND_COMMAND, KIND_CONFIGURATION, KIND_NOOP, EntryBatch

__all__ = [
    "Command",
    "InteractionEnv",
    "ScriptError",
    "STABILIZE_ROUNDS_MAX",
    "TestCase",
    "parse_command",
    "parse_script",
    "render_script",
    "run_script",
]

SEPARATOR = "----"
#: a stabilize command gives up (and says so) after this many process/deliver rounds
STABILIZE_ROUNDS_MAX = 1000


class ScriptError(ValueError):
    """A script is malformed or uses a command wrongly; ``line`` is 1-based (0: unknown)."""

    def __init__(self, message: str, line: int = 0, source: str = "") -> None:
        where = f"{source or '<script>'}:{line}: " if line else ""
        super().__init__(where + message)
        self.line = line


# ---- the file format --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """One command line: ``name`` and its words (``args``) and ``key=value`` options."""

    name: str
    args: tuple[str, ...]
    options: dict[str, str]
    line: int  # 1-based line number in the file

    def ids(self) -> list[int]:
        """The positional arguments as node ids."""
        return [_int(a, self) for a in self.args]

    def option_ids(self, key: str, default: list[int] | None = None) -> list[int] | None:
        if key not in self.options:
            return default
        value = self.options[key]
        return [_int(v, self) for v in value.split(",") if v] if value else []

    def option_int(self, key: str, default: int) -> int:
        return _int(self.options[key], self) if key in self.options else default

    def option_bool(self, key: str, default: bool) -> bool:
        if key not in self.options:
            return default
        value = self.options[key]
        if value not in ("true", "false"):
            raise ScriptError(f"{self.name}: {key} must be true or false, not {value!r}", self.line)
        return value == "true"


@dataclass(slots=True)
class TestCase:
    """One case: the lines before the separator (comments and blank lines included, kept
    verbatim for rewriting), the commands among them, and the expected output lines."""

    __test__ = False  # not a pytest class, despite the name

    script: list[str]
    commands: list[Command]
    expected: list[str]
    line: int  # line of the separator
    trailer: list[str] = field(default_factory=list)  # text after the last case (last only)


def _int(text: str, command: Command) -> int:
    try:
        return int(text)
    except ValueError:
        raise ScriptError(f"{command.name}: {text!r} is not an integer", command.line) from None


def parse_command(text: str, line: int = 0) -> Command:
    """Split one command line into a :class:`Command`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ScriptError(str(exc), line) from None
    if not words:
        raise ScriptError("empty command", line)
    args, options = [], {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq and key and all(c.isalnum() or c == "-" for c in key):
            if key in options:
                raise ScriptError(f"{words[0]}: option {key} given twice", line)
            options[key] = value
        else:
            args.append(word)
    return Command(words[0], tuple(args), options, line)


def _is_command(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def parse_script(text: str, source: str = "") -> list[TestCase]:
    """Read a script into its cases (see the module docstring for the format)."""
    lines = text.splitlines()
    cases: list[TestCase] = []
    pending: list[str] = []
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() != SEPARATOR:
            pending.append(line)
            if _is_command(line):
                commands.append(parse_command(line, i + 1))
            i += 1
            continue
        separator_line = i + 1
        if not commands:
            raise ScriptError("'----' without a command before it", separator_line, source)
        i += 1
        expected: list[str] = []
        if i < len(lines) and lines[i].strip() == SEPARATOR:
            # etcd's double separator: the output may hold blank lines; ends with '----' x2
            i += 1
            while True:
                if i >= len(lines):
                    raise ScriptError("unclosed '----' '----' output", separator_line, source)
                if (
                    lines[i].strip() == SEPARATOR
                    and i + 1 < len(lines)
                    and lines[i + 1].strip() == SEPARATOR
                ):
                    i += 2
                    break
                expected.append(lines[i])
                i += 1
            if i < len(lines) and not lines[i].strip():
                i += 1  # the blank line after the closing separators belongs to this case
        else:
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
            i += 1  # the blank line that ends the output
        cases.append(TestCase(pending, commands, expected, separator_line))
        pending, commands = [], []
    if commands:
        raise ScriptError(
            f"command {commands[0].name!r} has no '----' and expected output",
            commands[0].line,
            source,
        )
    if not cases:
        raise ScriptError("no test cases", 0, source)
    cases[-1].trailer = pending
    return cases


def render_script(cases: list[TestCase], outputs: list[str]) -> str:
    """The script text with ``outputs`` (one per case) as the expected outputs."""
    out: list[str] = []
    for case, output in zip(cases, outputs, strict=True):
        out.extend(case.script)
        out.append(SEPARATOR)
        lines = output.splitlines()
        if any(not line.strip() or line.strip() == SEPARATOR for line in lines):
            out.extend([SEPARATOR, *lines, SEPARATOR, SEPARATOR])
        else:
            out.extend(lines)
        out.append("")
        out.extend(case.trailer)
    return "\n".join(out).rstrip("\n") + "\n"


def run_script(text: str, source: str = "", seed: int = 0) -> tuple[list[TestCase], list[str]]:
    """Run every case of a script in one fresh :class:`InteractionEnv`; returns the cases and
    their actual outputs (``render_script(cases, outputs)`` is the rewritten file)."""
    cases = parse_script(text, source)
    env = InteractionEnv(seed=seed, source=source)
    return cases, [env.run_case(case) for case in cases]


# ---- rendering --------------------------------------------------------------------------------
def _members(values) -> str:
    return ",".join(str(v) for v in sorted(values)) or "none"


def _payload(payload) -> str:
    data = bytes(payload)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_entries(batch: EntryBatch) -> list[str]:
    """One line per entry: ``index/term kind [payload]``."""
    lines = []
    for index, term, kind, payload in batch:
        if kind == KIND_NOOP:
            what = "noop"
        elif kind == KIND_CONFIGURATION:
            conf = Configuration.decode(payload)
            what = f"conf voters={_members(conf.voters)} learners={_members(conf.learners)}"
        elif kind == KIND_COMMAND:
            what = f"cmd {_payload(payload)}"
        else:
            what = f"kind{kind} {_payload(payload)}"
        lines.append(f"{index}/{term} {what}")
    return lines


def render_message(m: Message) -> str:
    """``Message.describe()`` plus the fields it leaves out that scripts care about."""
    text = m.describe()
    if m.type is MessageType.READ_INDEX_RESPONSE:
        text += f" i{m.index}"
    if m.context:
        text += f" ctx={_payload(m.context)}"
    if m.transfer:
        text += " transfer"
    return text


# ---- the driver -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Member:
    """What the driver keeps per node id: the storage survives crashes, the node does not."""

    options: RaftOptions
    storage: MemoryLogStorage
    rng: random.Random
    node: RaftNode | None


class InteractionEnv:
    """Runs script commands against a set of nodes and renders what they do.

    Pure and deterministic: no I/O, one seeded ``random.Random`` per node (derived from
    ``seed`` and the node id), no global state. ``queue`` holds the messages sent and not yet
    delivered, in sending order.
    """

    def __init__(self, seed: int = 0, source: str = "") -> None:
        self.seed = seed
        self.source = source
        self.members: dict[int, _Member] = {}
        self.queue: list[Message] = []
        self.isolated: set[int] = set()
        self._handlers: dict[str, Callable[[Command], list[str]]] = {
            "add-nodes": self._add_nodes,
            "campaign": self._campaign,
            "tick": self._tick,
            "tick-heartbeat": self._tick_heartbeat,
            "tick-election": self._tick_election,
            "propose": self._propose,
            "propose-conf-change": self._propose_conf_change,
            "add-member": self._add_member,
            "remove-member": self._remove_member,
            "read-index": self._read_index,
            "transfer-leader": self._transfer_leader,
            "process-ready": self._process_ready,
            "deliver-msgs": self._deliver_msgs,
            "stabilize": self._stabilize,
            "status": self._status,
            "raft-log": self._raft_log,
            "raft-state": self._raft_state,
            "isolate": self._isolate,
            "heal": self._heal,
            "crash": self._crash,
            "restart": self._restart,
        }

    # ---- entry points ----------------------------------------------------------------------
    def run_case(self, case: TestCase) -> str:
        """The rendered output of a case: its commands' lines, or ``ok`` when there are none."""
        lines: list[str] = []
        for command in case.commands:
            lines.extend(self.run(command))
        return "\n".join(lines) or "ok"

    def run(self, command: Command) -> list[str]:
        """Run one command; returns its output lines (none for a silent command)."""
        handler = self._handlers.get(command.name)
        if handler is None:
            raise ScriptError(f"unknown command {command.name!r}", command.line, self.source)
        try:
            lines = handler(command)
        except InvariantError:
            raise  # a bug in the core: fail loudly, never render it as an expected output
        except ScriptError as exc:
            if exc.line:
                raise
            raise ScriptError(str(exc), command.line, self.source) from None
        except PyraftError as exc:
            lines = [f"error: {exc}"]
        return lines

    # ---- helpers ---------------------------------------------------------------------------
    def _member(self, member: int) -> _Member:
        if member not in self.members:
            raise ScriptError(f"no node {member}")
        return self.members[member]

    def node(self, member: int) -> RaftNode:
        """The live node ``member``; a ScriptError when it is down or unknown."""
        node = self._member(member).node
        if node is None:
            raise ScriptError(f"node {member} is down (crashed)")
        return node

    def _one_id(self, command: Command) -> int:
        ids = command.ids()
        if len(ids) != 1:
            raise ScriptError(f"{command.name} takes one node id")
        return ids[0]

    def _ids_or_all(self, command: Command) -> list[int]:
        ids = command.ids()
        for member in ids:
            self._member(member)
        return ids or sorted(self.members)

    # ---- commands: setup -------------------------------------------------------------------
    def _add_nodes(self, command: Command) -> list[str]:
        if len(command.args) != 1:
            raise ScriptError("add-nodes takes the number of nodes")
        count = _int(command.args[0], command)
        first = max(self.members, default=0) + 1
        new = list(range(first, first + count))
        voters = command.option_ids("voters", new)
        learners = command.option_ids("learners", [])
        standby = set(command.option_ids("standby", []) or [])
        try:
            configuration = Configuration(frozenset(voters or ()), frozenset(learners or ()))
        except ValueError as exc:
            raise ScriptError(f"add-nodes: {exc}") from None
        election = command.option_int("election", 10)
        heartbeat = command.option_int("heartbeat", 3)
        out = []
        for member in new:
            defaults = RaftOptions(id=member)
            options = RaftOptions(
                id=member,
                election_ticks_lower=election,
                election_ticks_upper=2 * election,
                heartbeat_ticks=heartbeat,
                lease_ticks=election - 1,
                pre_vote=command.option_bool("prevote", True),
                check_quorum=command.option_bool("checkquorum", True),
                standby=member in standby,
                append_bytes_max=command.option_int("append-bytes-max", defaults.append_bytes_max),
            )
            storage = MemoryLogStorage(configuration)
            rng = random.Random(self.seed * 1_000_003 + member)
            self.members[member] = _Member(options, storage, rng, None)
            self.members[member].node = RaftNode(options, storage, rng)
            out.append(self._state_line(member))
        return out

    # ---- commands: local events --------------------------------------------------------------
    def _campaign(self, command: Command) -> list[str]:
        self.node(self._one_id(command)).campaign()
        return []

    def _ticks(self, command: Command, count: Callable[[RaftOptions], int]) -> list[str]:
        for member in command.ids():
            node = self.node(member)
            for _ in range(count(node.options)):
                node.tick()
        return []

    def _tick(self, command: Command) -> list[str]:
        if not 1 <= len(command.args) <= 2:
            raise ScriptError("tick takes a node id and an optional count")
        member = _int(command.args[0], command)
        count = _int(command.args[1], command) if len(command.args) == 2 else 1
        node = self.node(member)
        for _ in range(count):
            node.tick()
        return []

    def _tick_heartbeat(self, command: Command) -> list[str]:
        return self._ticks(command, lambda options: options.heartbeat_ticks)

    def _tick_election(self, command: Command) -> list[str]:
        return self._ticks(command, lambda options: options.election_ticks_upper)

    def _propose(self, command: Command) -> list[str]:
        if len(command.args) < 2:
            raise ScriptError("propose takes a node id and one or more payloads")
        node = self.node(_int(command.args[0], command))
        first, last = node.propose([a.encode() for a in command.args[1:]])
        return [f"proposed at {first}" if first == last else f"proposed at {first}..{last}"]

    def _propose_conf_change(self, command: Command) -> list[str]:
        node = self.node(self._one_id(command))
        voters = command.option_ids("voters")
        if voters is None:
            raise ScriptError("propose-conf-change needs voters=")
        learners = command.option_ids("learners", []) or []
        try:
            configuration = Configuration(frozenset(voters), frozenset(learners))
        except ValueError as exc:
            raise ScriptError(f"propose-conf-change: {exc}") from None
        return [f"proposed configuration at {node.propose_configuration(configuration)}"]

    def _add_member(self, command: Command) -> list[str]:
        ids = command.ids()
        if len(ids) != 2:
            raise ScriptError("add-member takes the leader's id and the new member's")
        return [f"proposed learner {ids[1]} at {self.node(ids[0]).add_member(ids[1])}"]

    def _remove_member(self, command: Command) -> list[str]:
        ids = command.ids()
        if len(ids) != 2:
            raise ScriptError("remove-member takes the leader's id and the member's")
        return [f"proposed removal of {ids[1]} at {self.node(ids[0]).remove_member(ids[1])}"]

    def _read_index(self, command: Command) -> list[str]:
        if len(command.args) != 2:
            raise ScriptError("read-index takes a node id and a context")
        self.node(_int(command.args[0], command)).read_index(command.args[1].encode())
        return []

    def _transfer_leader(self, command: Command) -> list[str]:
        ids = command.ids()
        if len(ids) != 2:
            raise ScriptError("transfer-leader takes FROM and TO")
        self.node(ids[0]).transfer_leadership(ids[1])
        return []

    # ---- commands: the runtime's part --------------------------------------------------------
    def _process_ready(self, command: Command) -> list[str]:
        if not command.args:
            raise ScriptError("process-ready takes one or more node ids")
        out = []
        for member in command.ids():
            node = self.node(member)
            if node.has_ready():
                out.extend(self._handle_ready(member, node))
            else:
                out.append(f"> {member} has no Ready")
        return out

    def _handle_ready(self, member: int, node: RaftNode) -> list[str]:
        """Do what Ready's docstring asks, in that order, and render it."""
        rd: Ready = node.ready()
        storage = self._member(member).storage
        out = [f"> {member} handling Ready {rd.number}" + (" (must sync)" if rd.must_sync else "")]
        if rd.soft_state is not None:
            soft = rd.soft_state
            out.append(f"  soft state: {soft.role.value} lead={soft.leader}")
        for lost in rd.leadership_lost:
            out.append(f"  leadership lost: term={lost.term} {lost.reason.value}"
                       + (f" member={lost.member} t{lost.member_term}" if lost.member else ""))
        if rd.hard_state is not None:
            hard = rd.hard_state
            out.append(f"  hard state: term={hard.term} vote={hard.vote} commit={hard.commit}")
            storage.set_hard_state(hard)
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            out.append(
                f"  snapshot: index={meta.index} term={meta.term} "
                f"voters={_members(meta.voters)} learners={_members(meta.learners)}"
            )
            storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            out.append("  entries:")
            for batch in rd.entries:
                storage.append(batch)
                out.extend("    " + line for line in render_entries(batch))
        if rd.messages:
            out.append("  messages:")
            out.extend("    " + render_message(m) for m in rd.messages)
            self.queue.extend(rd.messages)
        if rd.persisted_messages:
            out.append("  messages after persistence:")
            out.extend("    " + render_message(m) for m in rd.persisted_messages)
            self.queue.extend(rd.persisted_messages)
        if rd.committed:
            out.append("  committed:")
            for batch in rd.committed:
                out.extend("    " + line for line in render_entries(batch))
        if rd.read_states:
            out.append("  read states:")
            out.extend(f"    index={rs.index} ctx={_payload(rs.context)}" for rs in rd.read_states)
        events = getattr(rd, "events", None) or []
        if events:
            out.append("  events:")
            out.extend(
                f"    {event.kind.value} member={event.member} index={event.index}"
                for event in events
            )
        node.advance(rd)
        return out

    def _deliver(self, targets: list[int], drop: set[int]) -> list[str]:
        """Deliver (or drop) the queued messages addressed to ``targets`` and ``drop``."""
        out: list[str] = []
        wanted = set(targets) | drop
        taken = [m for m in self.queue if m.dst in wanted]
        if not taken:
            return out
        self.queue = [m for m in self.queue if m.dst not in wanted]
        for member in sorted(wanted):
            mine = [m for m in taken if m.dst == member]
            if not mine:
                continue
            out.append(f"> {member} receiving messages")
            for m in mine:
                reason = self._drop_reason(m, drop)
                if reason:
                    out.append(f"  dropped ({reason}): {render_message(m)}")
                    continue
                out.append("  " + render_message(m))
                node = self.node(member)
                try:
                    node.step(m)
                except InvariantError:
                    raise
                except PyraftError as exc:
                    out.append(f"  error: {exc}")
        return out

    def _drop_reason(self, m: Message, drop: set[int]) -> str:
        if m.dst in drop:
            return "dropped by the script"
        if m.dst not in self.members or self.members[m.dst].node is None:
            return f"{m.dst} is down"
        if m.src in self.isolated or m.dst in self.isolated:
            return f"{m.src if m.src in self.isolated else m.dst} is isolated"
        return ""

    def _deliver_msgs(self, command: Command) -> list[str]:
        drop = set(command.option_ids("drop", []) or [])
        targets = command.ids()
        for member in targets:
            self._member(member)
        if not targets:
            targets = [m for m in sorted(self.members) if m not in drop]
        return self._deliver(targets, drop)

    def _stabilize(self, command: Command) -> list[str]:
        ids = self._ids_or_all(command)
        out: list[str] = []
        for _ in range(STABILIZE_ROUNDS_MAX):
            busy = False
            for member in ids:
                node = self.members[member].node
                if node is not None and node.has_ready():
                    out.extend(self._handle_ready(member, node))
                    busy = True
            delivered = self._deliver(ids, set())
            if delivered:
                out.extend(delivered)
                busy = True
            if not busy:
                return out
        out.append(f"error: not stable after {STABILIZE_ROUNDS_MAX} rounds")
        return out

    # ---- commands: inspection ----------------------------------------------------------------
    def _state_line(self, member: int) -> str:
        m = self.members[member]
        flags = []
        if m.options.standby:
            flags.append("standby")
        if member in self.isolated:
            flags.append("isolated")
        suffix = (" " + " ".join(flags)) if flags else ""
        node = m.node
        if node is None:
            hard = m.storage.hard_state
            return f"{member}: down term={hard.term} vote={hard.vote} commit={hard.commit}{suffix}"
        return (
            f"{member}: {node.role.value} term={node.term} vote={node.vote} lead={node.lead} "
            f"commit={node.log.committed} applied={node.log.applied} "
            f"last={node.log.last_index()}{suffix}"
        )

    def _status(self, command: Command) -> list[str]:
        member = self._one_id(command)
        self._member(member)
        out = [self._state_line(member)]
        node = self.members[member].node
        if node is None:
            return out
        conf = node.configuration
        out.append(f"  voters={_members(conf.voters)} learners={_members(conf.learners)}")
        if node.role is Role.LEADER:
            lease = "valid" if node.lease_valid() else "expired"
            transferee = f" transferee={node.lead_transferee}" if node.lead_transferee else ""
            out.append(f"  lease={lease}{transferee}")
            for peer, pr in sorted(node.progress.items()):
                flags = []
                if pr.probe_sent:
                    flags.append("probe-sent")
                if len(pr.inflights):
                    flags.append(f"inflight={len(pr.inflights)}")
                if pr.pending_snapshot:
                    flags.append(f"pending-snapshot={pr.pending_snapshot}")
                extra = (" " + " ".join(flags)) if flags else ""
                out.append(
                    f"  progress {peer}: {pr.state.value} match={pr.match} next={pr.next}{extra}"
                )
        return out

    def _raft_log(self, command: Command) -> list[str]:
        member = self._one_id(command)
        m = self._member(member)
        if m.node is None:
            storage = m.storage
            batch = storage.entries(storage.first_index(), storage.last_index() + 1)
            unstable_from = storage.last_index() + 1
        else:
            log = m.node.log
            batch = log.entries(log.first_index(), log.last_index() + 1)
            unstable_from = log.unstable_offset
        lines = render_entries(batch)
        if not lines:
            return ["log is empty"]
        return [
            line + (" (unstable)" if index >= unstable_from else "")
            for index, line in zip(range(batch.first_index, batch.last_index + 1), lines)
        ]

    def _raft_state(self, command: Command) -> list[str]:
        return [self._state_line(member) for member in sorted(self.members)]

    # ---- commands: faults ----------------------------------------------------------------------
    def _isolate(self, command: Command) -> list[str]:
        for member in command.ids():
            self._member(member)
            self.isolated.add(member)
        return []

    def _heal(self, command: Command) -> list[str]:
        self.isolated.clear()
        return []

    def _lose_messages_to(self, member: int, reason: str) -> list[str]:
        """A down node receives nothing: drop what is queued for it, and say so."""
        lost = [m for m in self.queue if m.dst == member]
        self.queue = [m for m in self.queue if m.dst != member]
        return [f"  dropped ({reason}): {render_message(m)}" for m in lost]

    def _crash(self, command: Command) -> list[str]:
        out = []
        for member in command.ids():
            self.node(member)
            self.members[member].node = None
            out.extend(self._lose_messages_to(member, f"{member} crashed"))
        return out

    def _restart(self, command: Command) -> list[str]:
        out = []
        for member in command.ids():
            m = self._member(member)
            if m.node is not None:
                raise ScriptError(f"node {member} is running; crash it first")
            # messages sent while it was down never reached it
            lost = self._lose_messages_to(member, f"{member} was down")
            m.node = RaftNode(m.options, m.storage, m.rng)
            out.append(self._state_line(member))
            out.extend(lost)
        return out
