"""A member's I/O thread: one thread that runs the storage work handed to it, in order.

The log's syncs and hard-state saves, snapshot writes and installs, and closing the storage
run here, one item at a time, first in first out: the storage is not thread-safe, and the
order of syncs is what makes the Readys durable in order (``persist``).

Two ways in, one queue:

- ``run(fn, *args)``, the member's own path (a Ready's sync, a snapshot chunk's write, the
  storage's close): the item goes onto a
  ``queue.SimpleQueue`` and an asyncio future of the loop comes back; the thread settles it
  with one ``call_soon_threadsafe``. Through ``loop.run_in_executor`` and a
  ``ThreadPoolExecutor``, the same handover took about 25 interpreted calls on the two
  threads (``inspect``'s checks of the function, the executor's work item and its future
  with the ``Condition`` that future holds, asyncio's chaining of the two futures), each
  taking the GIL on the I/O thread after its fdatasync: a few per write at 16 in flight;
- ``submit`` (this is a ``concurrent.futures.Executor``): the snapshot writer
  (``loop.run_in_executor``) and whatever else takes an executor, behind and ahead of
  ``run``'s items.

The thread starts with the first item and ends at ``shutdown`` once the items before it are
done (``shutdown(wait=True)`` waits for that). It is a daemon thread: a process that exits
without stopping its members does not wait for it; nothing it had not finished was
acknowledged, as an acknowledgement waits for its sync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["IOThread"]


class IOThread(concurrent.futures.Executor):
    """The I/O thread of one member (module docstring), named ``name``, settling ``run``'s
    futures on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # the thread's start, each put and the shutdown
        self._thread: threading.Thread | None = None
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """``fn(*args)`` on the thread, after everything handed over before; its result (or
        exception) in the returned future of the loop. Cancelling the future does not stop
        ``fn``: an item once handed over runs (a sync must not be skipped)."""
        future = self._loop.create_future()
        self._put((fn, args, future, self._loop))
        return future

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._put((functools.partial(fn, **kwargs) if kwargs else fn, args, future, None))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new items; the thread ends after those queued (``cancel_futures`` is refused:
        storage work once handed over runs)."""
        if cancel_futures:
            raise ValueError("the I/O thread runs every item handed to it")
        with self._lock:
            thread = self._thread
            if not self._closed:
                self._closed = True
                if thread is not None:
                    self._queue.put(None)
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join()

    def _put(self, item: tuple) -> None:
        # under the lock, so that no item can land behind the shutdown's None from any thread
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: cannot take work after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=_serve, args=(self._queue,),
                                                name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(item)


def _serve(items: queue.SimpleQueue) -> None:
    """The thread: each item in turn until the shutdown's ``None``."""
    while True:
        item = items.get()
        if item is None:
            return
        fn, args, future, loop = item
        item = None
        if loop is None:  # submit's: a concurrent future, settled here
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - the caller's to see
                    future.set_exception(exc)
        else:
            settle: Callable[[asyncio.Future, Any], None]
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the caller's to see
                settle, result = _fail, exc
            else:
                settle = _succeed
            try:
                loop.call_soon_threadsafe(settle, future, result)
            except RuntimeError:  # the loop is closed: nobody waits for the answer
                pass
            result = None
        fn = args = future = None  # nothing of a finished item kept alive while waiting


def _succeed(future: asyncio.Future, result: Any) -> None:
    if not future.done():  # cancelled: its waiter went away
        future.set_result(result)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
