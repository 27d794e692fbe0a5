"""Tests for the linearizability checker (``pyraft.testing.linearizability``).

Hand-written histories with known verdicts, a brute-force oracle on small random histories,
and properties of histories produced by executing operations against the model at points
inside their intervals.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pyraft.testing.linearizability import CheckResult, KVModel, Operation, check_history


def op(client, operation, call, ret, result=None, id=0):
    return Operation(client=client, op=operation, call=call, ret=ret, result=result, id=id)


def linearizable(history, **kwargs) -> bool:
    result = check_history(history, **kwargs)
    assert not result.timed_out, result.explanation
    return result.ok


# --- the model ------------------------------------------------------------------------------


def test_model_register_semantics():
    s = KVModel.initial_state()
    s, r = KVModel.apply(s, ("get", "x"))
    assert r is None and s == {}
    s, r = KVModel.apply(s, ("cas", "x", None, 1))
    assert r is True and s == {"x": 1}
    s, r = KVModel.apply(s, ("cas", "x", None, 2))
    assert r is False and s == {"x": 1}
    s2, r = KVModel.apply(s, ("put", "x", b"v"))
    assert r is None and s2 == {"x": b"v"} and s == {"x": 1}  # never mutated
    s3, r = KVModel.apply(s2, ("cas", "x", b"v", "w"))
    assert r is True and s3 == {"x": "w"}
    assert KVModel.apply(s3, ("get", "x")) == (s3, "w")
    assert KVModel.apply(s3, ("get", "y")) == (s3, None)
    s4, r = KVModel.apply(s3, ("delete", "x"))
    assert r is None and s4 == {} and s3 == {"x": "w"}
    assert KVModel.apply(s4, ("delete", "x")) == (s4, None)
    assert KVModel.step(None, ("cas", "k", None, 3)) == (3, True)
    assert KVModel.step(3, ("cas", "k", 4, 5)) == (3, False)
    assert KVModel.key(("put", "k", 1)) == "k"


@pytest.mark.parametrize("bad", [
    ["put", "x", 1], (), ("incr", "x"), ("get",), ("put", "x"), ("cas", "x", 1),
    ("put", "x", None), ("cas", "x", 1, None), ("put", "x", [1]),
])
def test_malformed_operations_are_rejected(bad):
    with pytest.raises(ValueError):
        KVModel.validate(bad)
    with pytest.raises(ValueError):
        check_history([op(1, bad, 0, 1)])


def test_return_before_call_is_rejected():
    with pytest.raises(ValueError, match="before its call"):
        check_history([op(1, ("get", "x"), 5, 4)])
    with pytest.raises(ValueError):
        check_history([("get", "x")])


# --- hand-written histories -----------------------------------------------------------------


def test_empty_history():
    result = check_history([])
    assert result == CheckResult(True, None, result.explanation, 0, 0, False)


def test_sequential_history():
    assert linearizable([
        op(1, ("put", "x", 1), 0, 1),
        op(2, ("get", "x"), 2, 3, 1),
        op(1, ("cas", "x", 1, 2), 4, 5, True),
        op(2, ("cas", "x", 1, 3), 6, 7, False),
        op(3, ("get", "x"), 8, 9, 2),
        op(3, ("delete", "x"), 10, 11),
        op(1, ("get", "x"), 12, 13, None),
    ])


def test_stale_read_after_completed_write():
    history = [
        op(1, ("put", "x", 1), 0, 1, id=1),
        op(1, ("put", "x", 2), 2, 3, id=2),
        op(2, ("get", "x"), 4, 5, 1, id=3),
    ]
    result = check_history(history)
    assert not result.ok and not result.timed_out
    assert result.key == "x"
    text = result.explanation
    assert "key 'x'" in text
    assert "Longest linearizable prefix found (2 operations)" in text
    assert "get('x') -> 1  [call 4, ret 5]: the model returns 2 here" in text
    # The stale read is fine if it overlaps the second write.
    assert linearizable([*history[:2], replace(history[2], call=2.5)])


def test_read_of_a_value_never_written():
    result = check_history([
        op(1, ("put", "x", 1), 0, 1),
        op(2, ("get", "x"), 0, 9, 7),
    ])
    assert not result.ok and result.key == "x"
    assert "7" in result.explanation and "call 0, ret 9" in result.explanation
    # Also when another key holds that value.
    assert not linearizable([op(1, ("put", "y", 7), 0, 1), op(2, ("get", "x"), 2, 3, 7)])


def test_lost_update_with_cas():
    base = [op(1, ("put", "x", 0), 0, 1)]
    both_won = [
        op(1, ("cas", "x", 0, 1), 2, 5, True),
        op(2, ("cas", "x", 0, 2), 3, 6, True),
    ]
    assert not linearizable(base + both_won)
    one_won = [both_won[0], replace(both_won[1], result=False)]
    assert linearizable(base + one_won)
    # The loser may also be linearized first and win, if the winner then fails.
    assert linearizable(base + [replace(both_won[0], result=False), both_won[1]])
    # Read-modify-write with get + put is the classic lost update: both read 0, both write.
    rmw = [
        op(1, ("get", "x"), 2, 3, 0), op(2, ("get", "x"), 2, 3, 0),
        op(1, ("put", "x", 1), 4, 5), op(2, ("put", "x", 2), 4, 5),
        op(3, ("get", "x"), 6, 7, 2),
    ]
    assert linearizable(base + rmw)  # no atomicity was promised
    assert not linearizable(base + rmw + [op(3, ("get", "x"), 8, 9, 1)])


def test_concurrent_put_and_get_either_order():
    put = op(1, ("put", "x", 1), 0, 10)
    assert linearizable([put, op(2, ("get", "x"), 1, 2, None)])
    assert linearizable([put, op(2, ("get", "x"), 1, 2, 1)])
    # Both reads inside the write: once one saw the write, a later one must too.
    assert linearizable([put, op(2, ("get", "x"), 1, 2, None), op(2, ("get", "x"), 3, 4, 1)])
    assert not linearizable([put, op(2, ("get", "x"), 1, 2, 1), op(2, ("get", "x"), 3, 4, None)])
    # Two overlapping reads may see old and new in either order.
    assert linearizable([put, op(2, ("get", "x"), 1, 5, 1), op(3, ("get", "x"), 2, 6, None)])


def test_touching_intervals_are_concurrent():
    put = op(1, ("put", "x", 1), 0, 5)
    assert linearizable([put, op(2, ("get", "x"), 5, 6, None)])  # ret == call: concurrent
    assert not linearizable([put, op(2, ("get", "x"), 5.5, 6, None)])
    assert linearizable([put, op(2, ("get", "x"), 6, 7, 1)])


def test_operation_that_never_returned_and_took_effect():
    put = op(1, ("put", "x", 1), 0, None)
    assert linearizable([put, op(2, ("get", "x"), 5, 6, 1)])
    # ... at any time after its call, however late.
    assert linearizable([
        put, op(2, ("get", "x"), 1, 2, None), op(2, ("get", "x"), 100, 101, 1),
    ])
    # ... but only once.
    assert not linearizable([
        put, op(2, ("get", "x"), 1, 2, 1), op(3, ("put", "x", 2), 3, 4),
        op(2, ("get", "x"), 5, 6, 2), op(2, ("get", "x"), 7, 8, 1),
    ])
    # ... and never before its call.
    late = op(1, ("put", "x", 1), 3, None)
    assert not linearizable([late, op(2, ("get", "x"), 0, 2, 1)])
    assert linearizable([late, op(2, ("get", "x"), 0, 3, 1)])
    # A pending cas, and a pending delete.
    assert linearizable([
        op(1, ("put", "x", 1), 0, 1), op(2, ("cas", "x", 1, 5), 2, None, "ignored"),
        op(3, ("get", "x"), 3, 4, 5), op(1, ("delete", "x"), 5, None),
        op(3, ("get", "x"), 6, 7, None),
    ])


def test_operation_that_never_returned_and_did_not_take_effect():
    assert linearizable([
        op(1, ("put", "x", 1), 0, None),
        op(2, ("get", "x"), 5, 6, None),
    ])
    assert linearizable([
        op(1, ("put", "x", 1), 0, 1),
        op(2, ("delete", "x"), 2, None),
        op(3, ("get", "x"), 3, 4, 1),
        op(4, ("cas", "x", 1, 3), 5, None, True),  # its result is ignored
        op(3, ("get", "x"), 6, 7, 1),
        op(5, ("get", "x"), 8, None, "garbage"),
    ])


def test_keys_are_independent():
    history = [
        op(1, ("put", "x", 1), 0, 1),
        op(2, ("get", "y"), 2, 3, None),
        op(1, ("put", "y", 2), 4, 5),
        op(2, ("get", "x"), 6, 7, 1),
    ]
    result = check_history(history)
    assert result.ok and result.checked_keys == 2 and result.key is None
    bad = [*history, op(3, ("get", "y"), 8, 9, None)]
    result = check_history(bad)
    assert not result.ok and result.key == "y" and "key 'y'" in result.explanation
    # A failing key stops the check; keys go in order of first appearance.
    result = check_history([op(3, ("get", "z"), 0, 1, 5), *history])
    assert result.key == "z" and result.checked_keys == 1


def test_results_are_compared_exactly():
    assert not linearizable([op(1, ("put", "x", 1), 0, 1, "ok")])
    assert not linearizable([op(1, ("cas", "x", None, 1), 0, 1, None)])
    assert not linearizable([op(1, ("put", "x", b"a"), 0, 1), op(1, ("get", "x"), 2, 3, "a")])


def test_explanation_lists_candidates_and_later_operations():
    history = [
        op(1, ("put", "k", 1), 0, 1, id=10),
        op(2, ("cas", "k", 1, 2), 2, 3, True, id=11),
        op(3, ("cas", "k", 1, 3), 4, 5, True, id=12),
        op(1, ("get", "k"), 6, 7, 3, id=13),
        op(1, ("put", "k", 9), 8, None, id=14),
    ]
    result = check_history(history)
    assert not result.ok and result.key == "k"
    text = result.explanation
    assert "Register after the prefix: 2." in text
    assert "(id 12): cas('k', 1, 3) -> True  [call 4, ret 5]: the model returns False" in text
    assert "(id 13)" in text and "(id 14)" in text and "never returned" in text


def test_timeout_is_not_success():
    rng = random.Random(7)
    history = generated_history(rng, 400, clients=30, keys=1, latency=200.0, pending=0.05)
    assert check_history(history).ok
    result = check_history(history, max_states=50)
    assert not result.ok and result.timed_out
    assert result.key == "k0" and result.states_explored == 50
    assert "max_states=50" in result.explanation and "k0" in result.explanation
    # The budget covers all keys together.
    many = generated_history(random.Random(8), 400, clients=5, keys=8, latency=20.0)
    full = check_history(many)
    assert full.ok and full.states_explored > 100
    cut = check_history(many, max_states=full.states_explored - 1)
    assert cut.timed_out and not cut.ok and cut.states_explored == full.states_explored - 1


def test_deterministic():
    history = generated_history(random.Random(3), 300, clients=8, keys=2, latency=40.0,
                                pending=0.05)
    history[150] = replace(history[150], result=False if history[150].result else True)
    first, second = check_history(history), check_history(list(history))
    assert first == second


# --- generated histories --------------------------------------------------------------------


def generated_history(rng: random.Random, n: int, *, clients: int, keys: int, latency: float,
                      pending: float = 0.0) -> list[Operation]:
    """Clients each issue one operation at a time; each takes effect at a random point
    inside its interval (the model is applied in that order). A pending operation (ret None)
    took effect or not, at random; its client moves on regardless."""
    free = [0.0] * clients
    planned = []
    for n_op in range(n):
        client = rng.randrange(clients)
        call = free[client] + rng.uniform(0, latency / 4)
        point = call + rng.uniform(0, latency)
        ret = point + rng.uniform(0, latency)
        free[client] = ret
        key = f"k{rng.randrange(keys)}"
        kind = rng.choice(["put", "get", "get", "delete", "cas"])
        if kind == "put":
            operation = ("put", key, rng.randrange(4))
        elif kind == "cas":
            operation = ("cas", key, rng.choice([None, 0, 1, 2, 3]), rng.randrange(4))
        else:
            operation = (kind, key)
        lost = rng.random() < pending
        planned.append((point, n_op, client, operation, call, None if lost else ret,
                        not lost or rng.random() < 0.5))
    state = KVModel.initial_state()
    history = []
    for _point, n_op, client, operation, call, ret, took_effect in sorted(planned):
        result = None
        if took_effect:
            state, result = KVModel.apply(state, operation)
        history.append(op(client, operation, call, ret, result, id=n_op))
    history.sort(key=lambda o: o.id)
    return history


def test_large_history():
    """~2,000 operations from 5 clients over 10 keys."""
    history = generated_history(random.Random(2024), 2000, clients=5, keys=10, latency=20.0,
                                pending=0.02)
    result = check_history(history)
    assert result.ok, result.explanation
    assert result.checked_keys == 10


def brute_force(history: list[Operation]) -> bool:
    """Linearizability by trying every order (and every subset of pending operations)."""

    def search(state, remaining) -> bool:
        if all(o.ret is None for o in remaining):
            return True
        for o in remaining:
            others = [p for p in remaining if p is not o]
            if any(p.ret is not None and p.ret < o.call for p in others):
                continue  # something unplaced happened before o
            new_state, result = KVModel.apply(state, o.op)
            if o.ret is not None and result != o.result:
                continue
            if search(new_state, others):
                return True
        return False

    return search(KVModel.initial_state(), list(history))


small_ops = st.tuples(
    st.sampled_from(["put", "get", "delete", "cas"]),
    st.sampled_from(["a", "b"]),
    st.sampled_from([None, 1, 2]),  # put value / cas expected / get result
    st.sampled_from([1, 2]),  # cas new
    st.booleans(),  # cas result
    st.integers(0, 6),  # call
    st.one_of(st.none(), st.integers(0, 4)),  # duration, None: never returned
)


def build(spec) -> Operation:
    name, key, a, b, ok, call, duration = spec
    ret = None if duration is None else call + duration
    if name == "put":
        return op(0, ("put", key, a or b), call, ret)
    if name == "get":
        return op(0, ("get", key), call, ret, a)
    if name == "delete":
        return op(0, ("delete", key), call, ret)
    return op(0, ("cas", key, a, b), call, ret, ok)


@given(st.lists(small_ops, max_size=7))
def test_agrees_with_brute_force(specs):
    history = [build(s) for s in specs]
    result = check_history(history)
    assert not result.timed_out
    assert result.ok == brute_force(history), result.explanation


operation_spec = st.tuples(
    st.sampled_from(["put", "get", "delete", "cas"]),
    st.sampled_from(["a", "b", 3]),  # key
    st.integers(0, 3),  # value
    st.one_of(st.none(), st.integers(0, 3)),  # cas expected
    st.integers(0, 25),  # call is this much before the linearization point
    st.integers(0, 25),  # ret is this much after it
    st.sampled_from(["returned"] * 4 + ["pending, took effect", "pending, no effect"]),
)


def execute(specs) -> list[Operation]:
    """Execute the operations one at a time against the model, the i-th at time 10 * i,
    recording an interval around that time."""
    state = KVModel.initial_state()
    history = []
    for i, (name, key, value, expected, before, after, fate) in enumerate(specs):
        operation = {
            "put": ("put", key, value), "get": ("get", key), "delete": ("delete", key),
            "cas": ("cas", key, expected, value),
        }[name]
        result = None
        if fate != "pending, no effect":
            state, result = KVModel.apply(state, operation)
        point = 10 * i
        ret = point + after if fate == "returned" else None
        history.append(op(i % 3, operation, point - before, ret, result, id=i))
    return history


@given(st.lists(operation_spec, max_size=24), st.randoms(use_true_random=False))
def test_executed_histories_are_linearizable(specs, rng):
    history = execute(specs)
    rng.shuffle(history)  # the order of the records does not matter
    result = check_history(history)
    assert result.ok, result.explanation


@given(st.lists(operation_spec, min_size=1, max_size=24), st.integers(0, 10**6), st.booleans())
def test_impossible_read_is_caught(specs, pick, written_later):
    history = execute(specs)
    gets = [i for i, o in enumerate(history) if o.op[0] == "get" and o.ret is not None]
    assume(gets)
    i = gets[pick % len(gets)]
    key = history[i].op[1]
    history[i] = replace(history[i], result="never written")
    if written_later:
        # The value is written, but only by an operation called after everything else: the
        # search itself must refute the read.
        history.append(op(9, ("put", key, "never written"), 10_000, None))
    result = check_history(history)
    assert not result.ok and not result.timed_out
    assert result.key == key
    assert f"key {key!r}" in result.explanation
    if written_later:
        assert "Longest linearizable prefix" in result.explanation


def key_by_key(history: list[Operation]) -> bool:
    keys = {o.op[1] for o in history}
    return all(brute_force([o for o in history if o.op[1] == k]) for k in keys)


@given(st.lists(operation_spec, min_size=1, max_size=12), st.integers(0, 10**6))
def test_altered_result_agrees_with_brute_force(specs, pick):
    """Histories one wrong result away from an execution: the hard cases."""
    history = execute(specs)
    done = [i for i, o in enumerate(history) if o.ret is not None and o.op[0] in ("get", "cas")]
    assume(done)
    i = done[pick % len(done)]
    o = history[i]
    history[i] = replace(o, result=(not o.result) if o.op[0] == "cas" else (o.result or 0) + 1)
    result = check_history(history)
    assert not result.timed_out
    assert result.ok == key_by_key(history), result.explanation
