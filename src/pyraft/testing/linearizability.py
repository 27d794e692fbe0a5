"""A linearizability checker for client histories on a key-value register model.

A *history* is a collection of :class:`Operation` records, each with the client that issued
it, the operation, its invocation time (``call``), its response time (``ret``) and its
recorded result. The history is *linearizable* (Herlihy & Wing 1990) if every operation can
be given a single point in time between its call and its return such that executing the
operations one at a time, in the order of those points, against the sequential model
(:class:`KVModel`) produces exactly the recorded results. Operations that never returned
(``ret is None``) may take effect at any time after their call, or not at all; their results
are ignored.

The model is a register per key, so a history is checked one key at a time: linearizability
is *local* (compositional; Herlihy & Wing 1990, Theorem 1), and a history is linearizable
iff each key's sub-history is.

Each key is checked with the search of Wing & Gong ("Testing and verifying concurrent
objects", J. Parallel Distrib. Comput. 17, 1993) with the memoization proposed by Lowe
("Testing for linearizability", Concurrency and Computation: Practice and Experience 29(4),
2017), the combination usually called WGL: a depth-first search that repeatedly picks an
operation that may be linearized next (one whose call is not after the earliest return among
the operations not yet linearized), applies it to the model and keeps going if the model's
result matches the recorded one, backtracking otherwise; a configuration (set of linearized
operations as a bitset, model state) that has been explored once is never explored again.
Candidates are found by walking a doubly linked list of call and return events in time order
(calls before returns at equal times), from which linearized operations are unlinked and
relinked on backtracking ("dancing links").

Happens-before is strict: ``A`` precedes ``B`` iff ``A.ret < B.call``; operations whose
intervals touch (``A.ret == B.call``) are concurrent.

The search is exponential in the worst case; ``max_states`` bounds the number of
configurations explored. Running out of budget is reported as ``ok=False, timed_out=True``:
the checker never reports success without a witness linearization.

This module is pure: no I/O, clocks or randomness; results are fully deterministic (keys are
checked in the order they first appear in the history).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CheckResult", "KVModel", "Operation", "check_history"]

# How many operations of the longest linearizable prefix the explanation shows (its tail).
_PREFIX_SHOWN = 30
# How many not-yet-placed operations the explanation lists beyond the candidates.
_REMAINING_SHOWN = 10
# Operation name -> tuple length.
_ARITY = {"put": 3, "get": 2, "delete": 2, "cas": 4}


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation as observed by the client.

    ``op`` is one of ``("put", key, value)``, ``("get", key)``, ``("delete", key)`` or
    ``("cas", key, expected, new)``. ``call`` is the invocation time; ``ret`` the response
    time, or ``None`` if the operation never returned (it may or may not have taken effect,
    at any time after ``call``). ``result`` is the recorded result (ignored if ``ret`` is
    ``None``): ``None`` for put and delete, the value or ``None`` (absent) for get, a bool for
    cas. ``id`` is a free label shown in explanations.
    """

    client: int
    op: tuple
    call: int | float
    ret: int | float | None
    result: object
    id: int = 0


@dataclass
class CheckResult:
    """The verdict of :func:`check_history`.

    ``ok`` is True only if a linearization was found for every key. ``key`` is the key whose
    sub-history failed (or on which the search ran out of budget), else ``None``.
    ``explanation`` is human-readable. ``checked_keys`` counts the keys examined (including
    the failing one); ``states_explored`` the search configurations visited over all keys;
    ``timed_out`` is True if the search stopped at ``max_states`` without a verdict.
    """

    ok: bool
    key: object | None
    explanation: str
    checked_keys: int
    states_explored: int
    timed_out: bool


class KVModel:
    """The sequential specification: a map from keys to values, one register per key.

    All methods are pure. A whole-store state is a :class:`~collections.abc.Mapping` from key
    to value that is never mutated (:meth:`apply` returns a new ``dict`` when the operation
    changes it, else the same object); absent keys are simply missing. A single register's
    state (:meth:`step`) is its value, or ``None`` when absent. ``None`` is therefore not a
    storable value: ``put`` and the ``new`` of ``cas`` reject it.

    - ``("put", k, v)`` sets ``k`` to ``v``; result ``None``.
    - ``("get", k)`` result: the value of ``k``, ``None`` if absent.
    - ``("delete", k)`` removes ``k``; result ``None``.
    - ``("cas", k, expected, new)`` sets ``k`` to ``new`` iff its value equals ``expected``
      (``expected`` ``None``: iff ``k`` is absent); result: whether it did.
    """

    @staticmethod
    def initial_state() -> Mapping[Hashable, Any]:
        """The empty store."""
        return {}

    @staticmethod
    def validate(op: object) -> None:
        """Raise ``ValueError`` unless ``op`` is a well-formed operation tuple."""
        if not isinstance(op, tuple) or not op:
            raise ValueError(f"operation must be a non-empty tuple, got {op!r}")
        try:
            hash(op)
        except TypeError:
            raise ValueError(f"operation arguments must be hashable: {op!r}") from None
        arity = _ARITY.get(op[0])
        if arity is None:
            raise ValueError(f"unknown operation {op[0]!r} in {op!r}; expected one of "
                             f"{', '.join(_ARITY)}")
        if len(op) != arity:
            raise ValueError(f"{op[0]} takes {arity - 1} argument(s), got {op!r}")
        if op[-1] is None and op[0] in ("put", "cas"):
            raise ValueError(f"None means 'absent' and cannot be stored: {op!r}")

    @staticmethod
    def key(op: tuple) -> Hashable:
        """The key an operation acts on."""
        return op[1]

    @staticmethod
    def step(value: Any, op: tuple) -> tuple[Any, Any]:
        """Apply ``op`` to a single register holding ``value`` (``None``: absent).

        Returns ``(new_value, result)``. ``op`` is assumed valid (see :meth:`validate`).
        """
        name = op[0]
        if name == "get":
            return value, value
        if name == "put":
            return op[2], None
        if name == "delete":
            return None, None
        if value == op[2]:  # cas
            return op[3], True
        return value, False

    @staticmethod
    def apply(state: Mapping[Hashable, Any], op: tuple) -> tuple[Mapping[Hashable, Any], Any]:
        """Apply ``op`` to a whole-store ``state``; returns ``(new_state, result)``.

        ``state`` is not modified: a changed store is returned as a new ``dict``.
        """
        KVModel.validate(op)
        key = op[1]
        old = state.get(key)
        new, result = KVModel.step(old, op)
        if new == old:
            return state, result
        out = dict(state)
        if new is None:
            out.pop(key, None)
        else:
            out[key] = new
        return out, result


# ----------------------------------------------------------------------------------------
# The checker.


class _OutOfBudget(Exception):
    pass


def _fmt_op(o: Operation) -> str:
    args = ", ".join(repr(a) for a in o.op[1:])
    text = f"client {o.client} (id {o.id}): {o.op[0]}({args})"
    if o.ret is None:
        return f"{text}  [call {o.call!r}, never returned]"
    return f"{text} -> {o.result!r}  [call {o.call!r}, ret {o.ret!r}]"


class _KeySearch:
    """The WGL search over one key's sub-history."""

    def __init__(self, key: Hashable, ops: list[Operation]) -> None:
        self.key = key
        # Pending gets have no effect and an ignored result: they can always be left out.
        ops = [o for o in ops if not (o.ret is None and o.op[0] == "get")]
        ops.sort(key=lambda o: o.call)  # stable: equal calls keep history order
        self.ops = ops
        self.pending = [o.ret is None for o in ops]
        self.n_completed = sum(1 for p in self.pending if not p)
        # move ordering (of completed operations only: a pending one's is never read)
        self.rets = [math.inf if o.ret is None else o.ret for o in ops]
        # Completed operations that leave the state unchanged wherever they are placed.
        self.readonly = [
            o.ret is not None
            and (o.op[0] == "get" or (o.op[0] == "cas" and (o.op[2] == o.op[3] or not o.result)))
            for o in ops
        ]

        # Events: (time, kind, op index); kind 0 = call sorts before kind 1 = return at equal
        # times, which makes touching intervals concurrent.
        events = [(o.call, 0, i) for i, o in enumerate(ops)]
        events += [(o.ret, 1, i) for i, o in enumerate(ops) if o.ret is not None]
        events.sort()
        m = len(events)
        # Linked list over positions 1..m; 0 is the head sentinel, m + 1 the tail.
        self.nxt = list(range(1, m + 2)) + [m + 1]
        self.prv = [0] + list(range(0, m + 1))
        self.tail = m + 1
        self.ev_ret = [False] * (m + 2)
        self.ev_op = [-1] * (m + 2)
        self.call_pos = [0] * len(ops)
        self.ret_pos = [-1] * len(ops)
        for pos, (_, kind, i) in enumerate(events, start=1):
            self.ev_ret[pos] = kind == 1
            self.ev_op[pos] = i
            if kind == 0:
                self.call_pos[i] = pos
            else:
                self.ret_pos[i] = pos

        self.best_path: list[int] = []
        self.best_state: Any = None
        self.explored = 0

    # Dancing links: unlink an operation's events, relink them in reverse order.
    def _lift(self, i: int) -> None:
        nxt, prv = self.nxt, self.prv
        c = self.call_pos[i]
        nxt[prv[c]] = nxt[c]
        prv[nxt[c]] = prv[c]
        r = self.ret_pos[i]
        if r >= 0:
            nxt[prv[r]] = nxt[r]
            prv[nxt[r]] = prv[r]

    def _unlift(self, i: int) -> None:
        nxt, prv = self.nxt, self.prv
        r = self.ret_pos[i]
        if r >= 0:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        c = self.call_pos[i]
        nxt[prv[c]] = c
        prv[nxt[c]] = c

    def _moves(self, state: Any) -> list[tuple[int, Any]]:
        """The ``(operation, new state)`` pairs to try next from ``state``, best first.

        The candidates are the calls before the first remaining return event (the return of
        the *blocking* operation: every candidate's call is not after it, and it must itself
        be placed before anything called later). Two reductions keep the search small
        without losing completeness:

        - A completed read-only candidate (a get, a cas that failed, a cas whose expected
          and new values are equal) that returns its recorded result here is the only move
          tried: any linearization that places it later stays valid with it moved here,
          because it is a candidate (no unplaced operation returned before its call) and,
          changing nothing wherever it is placed, the operations it jumps over see the same
          states. (A put of the current value is not read-only: placed later, it may write.)
        - A pending candidate that would leave the state unchanged is not tried: placing it
          is equivalent to leaving it out, which remains possible.

        Order (a heuristic only): completed operations by return time, earliest first, then
        pending ones by call time; but if the blocking operation's result cannot be produced
        in ``state``, pending ones first, as a write that took effect without returning is
        then a likely explanation.
        """
        nxt, ev_ret, ev_op, tail = self.nxt, self.ev_ret, self.ev_op, self.tail
        ops, pending, readonly, step = self.ops, self.pending, self.readonly, KVModel.step
        done: list[tuple[int, Any]] = []
        maybe: list[tuple[int, Any]] = []
        e = nxt[0]
        while e != tail and not ev_ret[e]:
            i = ev_op[e]
            e = nxt[e]
            op = ops[i]
            new_state, result = step(state, op.op)
            if pending[i]:
                if new_state != state:
                    maybe.append((i, new_state))
            elif result == op.result:
                if readonly[i]:
                    return [(i, new_state)]
                done.append((i, new_state))
        if len(done) > 1:
            rets = self.rets
            done.sort(key=lambda move: rets[move[0]])
        if maybe and e != tail:
            blocking = ops[ev_op[e]]
            if step(state, blocking.op)[1] != blocking.result:
                return maybe + done
        return done + maybe

    def impossible_result(self) -> str | None:
        """A quick refutation: a completed get that returned a value nobody writes, or a cas
        that succeeded comparing against such a value. Returns an explanation, or None."""
        written: set[Any] = set()
        for o in self.ops:
            if o.op[0] in ("put", "cas"):
                written.add(o.op[-1])
        for i, o in enumerate(self.ops):
            if self.pending[i]:
                continue
            name = o.op[0]
            if name == "get" and o.result is not None:
                value = o.result
            elif name == "cas" and o.result is True and o.op[2] is not None:
                value = o.op[2]
            else:
                continue
            try:
                if value in written:
                    continue
            except TypeError:  # an unhashable recorded result: leave it to the search
                continue
            return (
                f"key {self.key!r}: not linearizable: {_fmt_op(o)} needs the register to hold "
                f"{value!r}, a value no operation on this key writes "
                f"({len(self.ops)} operations on this key)."
            )
        return None

    def run(self, budget: int) -> bool:
        """Search for a linearization. True if found, False if none exists.

        Raises :class:`_OutOfBudget` when more than ``budget`` configurations are explored.
        """
        if self.n_completed == 0:
            return True
        pending = self.pending
        state: Any = None
        linearized = 0
        remaining = best_remaining = self.n_completed
        seen: set[tuple[int, Any]] = set()
        path: list[tuple[int, Any]] = []  # (operation, model state before it)
        frames: list[list[Any]] = [[self._moves(state), 0]]  # [moves, index of next to try]
        while frames:
            frame = frames[-1]
            moves, cur = frame
            chosen = -1
            while cur < len(moves):
                i, new_state = moves[cur]
                cur += 1
                config = (linearized | (1 << i), new_state)
                if config in seen:
                    continue
                seen.add(config)
                self.explored += 1
                if self.explored > budget:
                    raise _OutOfBudget
                chosen = i
                break
            if chosen < 0:
                frames.pop()
                if not path:
                    return False
                i, state = path.pop()
                self._unlift(i)
                linearized &= ~(1 << i)
                if not pending[i]:
                    remaining += 1
                continue
            frame[1] = cur
            path.append((chosen, state))
            self._lift(chosen)
            linearized |= 1 << chosen
            state = new_state
            if not pending[chosen]:
                remaining -= 1
                if remaining == 0:
                    self.best_path = [p[0] for p in path]
                    self.best_state = state
                    return True
            if remaining < best_remaining:  # best: most completed operations placed
                best_remaining = remaining
                self.best_path = [p[0] for p in path]
                self.best_state = state
            frames.append([self._moves(state), 0])
        return False  # pragma: no cover - the loop returns from inside

    # --- explanations -------------------------------------------------------------------

    def _prefix_lines(self) -> list[str]:
        lines: list[str] = []
        path = self.best_path
        start = max(0, len(path) - _PREFIX_SHOWN)
        if start:
            lines.append(f"  ... ({start} earlier operations)")
        for n, i in enumerate(path[start:], start=start + 1):
            lines.append(f"  {n}. {_fmt_op(self.ops[i])}")
        if not path:
            lines.append("  (empty: no operation could be placed first)")
        return lines

    def explain_failure(self) -> str:
        ops, pending = self.ops, self.pending
        placed = set(self.best_path)
        state = self.best_state
        rest = [i for i in range(len(ops)) if i not in placed]
        first_ret = min((ret for i in rest if (ret := ops[i].ret) is not None), default=None)
        cands = [i for i in rest if first_ret is None or ops[i].call <= first_ret]
        lines = [
            f"key {self.key!r}: not linearizable ({len(ops)} operations on this key, "
            f"{self.n_completed} completed).",
            f"Longest linearizable prefix found ({len(self.best_path)} operations):",
            *self._prefix_lines(),
            f"Register after the prefix: {'absent' if state is None else repr(state)}.",
            f"Candidates for the next place (called no later than {first_ret!r}, the earliest "
            "return among the unplaced operations); none of them extends the prefix:",
        ]
        for i in cands:
            o = ops[i]
            _, result = KVModel.step(state, o.op)
            if pending[i]:
                why = "never returned (optional); placing it here does not help"
            elif result != o.result:
                why = f"the model returns {result!r} here"
            else:
                why = "its result fits here, but no linearization of the rest follows"
            lines.append(f"  {_fmt_op(o)}: {why}")
        others = [i for i in rest if i not in cands]
        if others:
            lines.append(f"Not placed either ({len(others)} later operations), first ones:")
            lines.extend(f"  {_fmt_op(ops[i])}" for i in others[:_REMAINING_SHOWN])
        return "\n".join(lines)

    def explain_timeout(self, max_states: int) -> str:
        return "\n".join([
            f"key {self.key!r}: gave up after exploring {max_states} states in all "
            f"(max_states={max_states}); linearizability neither proved nor refuted "
            f"({len(self.ops)} operations on this key).",
            f"Longest linearizable prefix found so far ({len(self.best_path)} operations):",
            *self._prefix_lines(),
        ])


def check_history(history: Iterable[Operation], *, max_states: int = 2_000_000) -> CheckResult:
    """Check that ``history`` is linearizable with respect to :class:`KVModel`.

    The history is split by key and each key's sub-history is searched separately (WGL,
    see the module docstring), keys in order of first appearance; checking stops at the
    first key that fails. ``max_states`` bounds the configurations explored over all keys;
    exceeding it gives ``ok=False, timed_out=True``.

    Raises ``ValueError`` for malformed operations (unknown op, wrong arity, unhashable
    arguments, ``None`` as a stored value, ``ret < call``).
    """
    by_key: dict[Hashable, list[Operation]] = {}
    total = 0
    for o in history:
        if not isinstance(o, Operation):
            raise ValueError(f"not an Operation: {o!r}")
        KVModel.validate(o.op)
        if o.ret is not None and o.ret < o.call:
            raise ValueError(f"operation returns before its call: {o!r}")
        by_key.setdefault(o.op[1], []).append(o)
        total += 1

    explored = 0
    checked = 0
    for key, ops in by_key.items():
        checked += 1
        search = _KeySearch(key, ops)
        impossible = search.impossible_result()
        if impossible is not None:
            return CheckResult(False, key, impossible, checked, explored, False)
        try:
            found = search.run(max_states - explored)
        except _OutOfBudget:
            explored += search.explored - 1
            return CheckResult(False, key, search.explain_timeout(max_states), checked,
                               explored, True)
        explored += search.explored
        if not found:
            return CheckResult(False, key, search.explain_failure(), checked, explored, False)
    return CheckResult(
        True, None,
        f"linearizable: {total} operations on {checked} keys "
        f"({explored} search states explored).",
        checked, explored, False,
    )
