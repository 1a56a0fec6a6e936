"""Overlapping a batch's steps on one machine: inputs read ahead on one thread, results written
behind on another, while the caller's thread scores. Both queues are bounded, so memory stays flat
over any batch; both threads finish the item in hand and stop when the batch ends or is interrupted,
so that no temporary file is left behind."""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, TypeVar

In, Out = TypeVar("In"), TypeVar("Out")


def read_ahead(items: Iterable[In], load: Callable[[In], Out], depth: int) -> Iterator[Out]:
    """`load(item)` of each item in order, computed up to `depth` items ahead on a thread (in the
    caller's thread when `depth` is 0). `load` must not raise: it returns its error."""
    items = iter(items)
    if depth <= 0:
        yield from map(load, items)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sslanomaly-read") as pool:
        pending = deque(pool.submit(load, item) for item in islice(items, depth))
        try:
            while pending:
                done = pending.popleft().result()
                pending.extend(pool.submit(load, item) for item in islice(items, 1))
                yield done
        finally:  # stopped or interrupted: what is not started is not started
            for future in pending:
                future.cancel()


class WriteBehind:
    """`write(*args)` of each `put` on a thread of its own, at most `depth` waiting; the results
    come back, in order, from `finished()` (on the caller's thread, which reports them)."""

    def __init__(self, write: Callable[..., Out], depth: int = 2) -> None:
        self._write = write
        self._todo: queue.Queue = queue.Queue(maxsize=depth)
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sslanomaly-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (args := self._todo.get()) is not None:
            if not self._abandon.is_set():
                self._done.put(self._write(*args))

    def put(self, *args) -> None:
        self._todo.put(args)

    def finished(self) -> list[Out]:
        out = []
        while not self._done.empty():
            out.append(self._done.get())
        return out

    def close(self, abandon: bool = False) -> list[Out]:
        """Wait for the writes in hand (all of them, or with `abandon` only the one being written)."""
        if abandon:
            self._abandon.set()
        self._todo.put(None)
        self._thread.join()
        return self.finished()
