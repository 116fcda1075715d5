"""Tests for ``pydata._core.RingBuffer``: exactly-once delivery across threads, the close and
timeout contract, argument checks, GIL release and Ctrl-C.

No test depends on how long anything takes: blocked calls get a long timeout that only a bug
reaches, and "the call is blocked" is observed through ``RingBuffer._waiters``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydata._core import RingBuffer
from pydata.errors import ClosedError, PydataError, WaitTimeoutError

LONG = 30.0  # seconds; a blocked call only reaches this timeout if the code under test is broken


class _Call(threading.Thread):
    """Runs `fn` on a daemon thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # handed to the test thread
            self.error = e


def _start_blocked(ring: RingBuffer, fn: Callable[[], Any]) -> _Call:
    """Starts `fn` on a thread and returns once it sleeps inside the ring (or has finished)."""
    call = _Call(fn)
    call.start()
    while ring._waiters == 0 and call.is_alive():
        time.sleep(0.001)  # polling only; correctness never depends on this
    return call


def _finish(call: _Call) -> Any:
    call.join()
    if call.error is not None:
        raise call.error
    return call.result


def test_try_push_on_full_returns_false_and_try_pop_on_empty_returns_none() -> None:
    ring = RingBuffer(2)
    assert ring.try_pop() is None
    assert ring.try_push(1) is True
    assert ring.try_push(2) is True
    assert ring.try_push(3) is False
    assert ring.try_pop() == 1
    assert ring.try_pop() == 2
    assert ring.try_pop() is None


def test_capacity_is_exact_and_len_counts_tokens() -> None:
    ring = RingBuffer(5)
    assert ring.capacity == 5
    assert len(ring) == 0
    for i in range(5):
        ring.push(i)
        assert len(ring) == i + 1
    assert ring.try_push(5) is False
    assert [ring.pop() for _ in range(5)] == [0, 1, 2, 3, 4]  # FIFO
    assert len(ring) == 0
    assert not ring.closed
    assert repr(ring) == "RingBuffer(capacity=5, len=0)"


def test_full_uint64_range_round_trips() -> None:
    ring = RingBuffer(2)
    ring.push(2**64 - 1)
    ring.push(np.uint64(7))
    assert ring.pop() == 2**64 - 1
    assert ring.pop() == 7


@pytest.mark.parametrize("capacity", [0, -1, -(2**40), 2**32 + 1])
def test_invalid_capacity_raises_value_error(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(capacity)


@pytest.mark.parametrize("token", [-1, 2**64, 1.5])
@pytest.mark.parametrize("method", ["try_push", "push"])
def test_token_outside_uint64_raises_type_error(method: str, token: object) -> None:
    ring = RingBuffer(2)
    with pytest.raises(TypeError):
        getattr(ring, method)(token)
    assert len(ring) == 0


def test_push_many_and_pop_many_check_their_arrays() -> None:
    ring = RingBuffer(4)
    with pytest.raises(TypeError):
        ring.push_many(np.array([-1, 2], dtype=np.int64))  # no unsafe cast to uint64
    with pytest.raises(ValueError, match="tokens: expected a 1-D"):
        ring.push_many(np.zeros((2, 2), dtype=np.uint64))
    ring.push(1)
    with pytest.raises(TypeError):
        ring.pop_many(np.zeros(4, dtype=np.int64))  # out is never converted: writes would be lost
    with pytest.raises(TypeError):
        ring.pop_many(np.zeros(8, dtype=np.uint64)[::2])
    read_only = np.zeros(4, dtype=np.uint64)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        ring.pop_many(read_only)
    with pytest.raises(ValueError, match="length 0"):
        ring.pop_many(np.zeros(0, dtype=np.uint64))
    assert ring.pop() == 1  # nothing was lost


def test_push_many_converts_safe_inputs_and_pop_many_takes_what_is_ready() -> None:
    ring = RingBuffer(8)
    ring.push_many([0, 1])
    ring.push_many(np.array([2, 3], dtype=np.uint32))
    ring.push_many(np.arange(4, 12, dtype=np.uint64)[::2])  # strided input is copied
    out = np.zeros(3, dtype=np.uint64)
    assert ring.pop_many(out) == 3
    assert out.tolist() == [0, 1, 2]
    big = np.zeros(10, dtype=np.uint64)
    assert ring.pop_many(big) == 5
    assert big[:5].tolist() == [3, 4, 6, 8, 10]


def test_timeouts_raise_wait_timeout_error() -> None:
    ring = RingBuffer(1)
    with pytest.raises(WaitTimeoutError, match="stayed empty") as info:
        ring.pop(timeout=0.01)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, PydataError)
    with pytest.raises(WaitTimeoutError):
        ring.pop_many(np.zeros(2, dtype=np.uint64), timeout=0)
    ring.push(1)
    with pytest.raises(WaitTimeoutError, match="stayed full"):
        ring.push(2, timeout=0)
    assert ring._waiters == 0


def test_push_many_timeout_says_how_many_were_pushed() -> None:
    ring = RingBuffer(2)
    with pytest.raises(WaitTimeoutError, match="2 of 5 tokens were pushed"):
        ring.push_many(np.arange(5, dtype=np.uint64), timeout=0)
    assert [ring.pop(), ring.pop()] == [0, 1]


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
def test_invalid_timeout_raises_value_error(timeout: float) -> None:
    ring = RingBuffer(1)
    with pytest.raises(ValueError, match="timeout"):
        ring.pop(timeout=timeout)


def test_after_close_the_rest_drains_then_closed_error() -> None:
    ring = RingBuffer(4)
    ring.push_many(np.arange(1, 5, dtype=np.uint64))
    ring.close()
    ring.close()  # idempotent
    assert ring.closed
    with pytest.raises(ClosedError, match="closed"):
        ring.push(9)
    with pytest.raises(ClosedError):
        ring.try_push(9)
    with pytest.raises(ClosedError) as info:
        ring.push_many(np.array([9], dtype=np.uint64))
    assert isinstance(info.value, RuntimeError)
    assert ring.pop() == 1
    assert ring.try_pop() == 2
    out = np.zeros(4, dtype=np.uint64)
    assert ring.pop_many(out) == 2
    assert out[:2].tolist() == [3, 4]
    with pytest.raises(ClosedError, match="drained"):
        ring.pop(timeout=LONG)
    with pytest.raises(ClosedError):
        ring.try_pop()
    with pytest.raises(ClosedError):
        ring.pop_many(out)


def _pop_many(ring: RingBuffer) -> list[int]:
    out = np.zeros(4, dtype=np.uint64)
    n = ring.pop_many(out, timeout=LONG)
    return [int(t) for t in out[:n]]


# (prefill, call): each call blocks on RingBuffer(1) holding `prefill` tokens. Pops return the
# tokens they took; pushes add token 7.
BLOCKING_CALLS = [
    pytest.param(0, lambda r: [r.pop(timeout=LONG)], id="pop"),
    pytest.param(0, _pop_many, id="pop_many"),
    pytest.param(1, lambda r: r.push(7, timeout=LONG), id="push"),
    pytest.param(1, lambda r: r.push_many(np.array([7], np.uint64), timeout=LONG), id="push_many"),
]


@pytest.mark.parametrize(("prefill", "call"), BLOCKING_CALLS)
def test_close_wakes_a_blocked_call(prefill: int, call: Callable[[RingBuffer], Any]) -> None:
    ring = RingBuffer(1)
    for i in range(prefill):
        ring.push(i)
    blocked = _start_blocked(ring, lambda: call(ring))
    assert ring._waiters == 1
    ring.close()
    with pytest.raises(ClosedError):
        _finish(blocked)
    assert ring._waiters == 0


def test_push_many_closed_midway_says_how_many_were_pushed() -> None:
    ring = RingBuffer(2)
    blocked = _start_blocked(ring, lambda: ring.push_many(np.arange(5, dtype=np.uint64)))
    ring.close()
    with pytest.raises(ClosedError, match="2 of 5 tokens were pushed"):
        _finish(blocked)
    assert [ring.pop(), ring.pop()] == [0, 1]


@pytest.mark.parametrize(("prefill", "call"), BLOCKING_CALLS)
def test_blocking_calls_release_the_gil(prefill: int, call: Callable[[RingBuffer], Any]) -> None:
    # STYLE 2.10: the blocked thread can only finish if this thread runs Python meanwhile. A call
    # that held the GIL would instead end with WaitTimeoutError after LONG seconds.
    ring = RingBuffer(1)
    for i in range(prefill):
        ring.push(i)
    blocked = _start_blocked(ring, lambda: call(ring))
    if prefill:
        assert ring.pop() == 0  # makes room for the blocked push
        _finish(blocked)
        assert ring.pop() == 7
    else:
        ring.push(42)
        assert _finish(blocked) == [42]


def test_python_threads_deliver_every_token_exactly_once() -> None:
    ring = RingBuffer(8)
    producers, consumers, per = 4, 4, 2_000
    popped: list[list[int]] = [[] for _ in range(consumers)]

    def produce(p: int) -> None:
        for token in range(p * per, (p + 1) * per):
            ring.push(token, timeout=LONG)

    def consume(c: int) -> None:
        try:
            while True:
                popped[c].append(ring.pop(timeout=LONG))
        except ClosedError:
            pass

    _run_threads(ring, produce, consume, producers, consumers)
    assert sorted(t for lst in popped for t in lst) == list(range(producers * per))
    for lst in popped:  # one consumer sees each producer's tokens in push order
        for p in range(producers):
            mine = [t for t in lst if t // per == p]
            assert mine == sorted(mine)


def test_batch_calls_from_many_threads_deliver_every_token_exactly_once() -> None:
    ring = RingBuffer(64)
    producers, consumers, per = 4, 4, 50_000
    popped: list[list[np.ndarray]] = [[] for _ in range(consumers)]

    def produce(p: int) -> None:
        tokens = np.arange(p * per, (p + 1) * per, dtype=np.uint64)
        for chunk in np.array_split(tokens, 50):
            ring.push_many(chunk, timeout=LONG)

    def consume(c: int) -> None:
        out = np.empty(256, dtype=np.uint64)
        try:
            while True:
                n = ring.pop_many(out, timeout=LONG)
                popped[c].append(out[:n].copy())
        except ClosedError:
            pass

    _run_threads(ring, produce, consume, producers, consumers)
    everything = np.sort(np.concatenate([a for lst in popped for a in lst]))
    np.testing.assert_array_equal(everything, np.arange(producers * per, dtype=np.uint64))


def _run_threads(
    ring: RingBuffer,
    produce: Callable[[int], None],
    consume: Callable[[int], None],
    producers: int,
    consumers: int,
) -> None:
    prod = [_Call(lambda p=p: produce(p)) for p in range(producers)]
    cons = [_Call(lambda c=c: consume(c)) for c in range(consumers)]
    for t in prod + cons:
        t.start()
    for t in prod:
        _finish(t)
    ring.close()
    for t in cons:
        _finish(t)
    assert len(ring) == 0
    assert ring._waiters == 0


@pytest.mark.parametrize(("prefill", "call"), BLOCKING_CALLS)
def test_ctrl_c_interrupts_a_blocked_call(prefill: int, call: Callable[[RingBuffer], Any]) -> None:
    # The main thread blocks; a helper sends SIGINT once it sees the main thread asleep in the
    # ring. Python runs signal handlers only in the main thread, between the wait's slices.
    ring = RingBuffer(1)
    for i in range(prefill):
        ring.push(i)
    done = threading.Event()

    def interrupt_when_blocked() -> None:
        while ring._waiters == 0 and not done.is_set():
            time.sleep(0.001)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt_when_blocked, daemon=True)
    try:
        helper.start()
        with pytest.raises(KeyboardInterrupt) as info:
            try:
                call(ring)
            finally:
                done.set()
                helper.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    # Raised by the call itself, not by a handler that ran after the call had failed otherwise.
    assert info.value.__context__ is None
    assert ring._waiters == 0
    assert len(ring) == prefill  # still usable, nothing lost or added
    if prefill:
        assert ring.pop() == 0
    ring.push(5)
    assert ring.pop() == 5


_ops = st.lists(st.one_of(st.integers(0, 2**64 - 1), st.none()), max_size=60)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 6), ops=_ops)
def test_single_thread_behaves_like_a_bounded_deque(capacity: int, ops: list[int | None]) -> None:
    ring = RingBuffer(capacity)
    model: deque[int] = deque()
    for op in ops:
        if op is None:
            assert ring.try_pop() == (model.popleft() if model else None)
        else:
            accepted = len(model) < capacity
            assert ring.try_push(op) is accepted
            if accepted:
                model.append(op)
        assert len(ring) == len(model)
