"""Overlapping a batch's steps on one machine: inputs read ahead on one thread, results written
behind on two others, while the caller's thread scores. Both queues are bounded, so memory stays flat
over any batch; the threads finish the items in hand and stop when the batch ends or is interrupted,
so that no temporary file is left behind."""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
    """`write(*args)` of each `put` on `workers` threads of their own, at most `depth` waiting beyond
    those being written; the results come back in order from `finished()` (on the caller's thread,
    which reports them). Two workers: a case's files (overlay, PNG, heatmap) cost more than its
    scoring, so a single writer would set the pace of the batch on two cores."""

    def __init__(self, write: Callable[..., Out], depth: int = 2, workers: int = 2) -> None:
        self._write = write
        self._limit = depth + workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sslanomaly-write")
        self._pending: deque[Future] = deque()

    def put(self, *args) -> None:
        """Hand one write over; waits while `depth` are waiting already (memory stays flat)."""
        while len(unfinished := [f for f in self._pending if not f.done()]) >= self._limit:
            wait(unfinished, return_when=FIRST_COMPLETED)
        self._pending.append(self._pool.submit(self._write, *args))

    def finished(self) -> list[Out]:
        out = []
        while self._pending and self._pending[0].done():
            out.append(self._pending.popleft().result())
        return out

    def close(self, abandon: bool = False) -> list[Out]:
        """Wait for the writes in hand (all of them, or with `abandon` only those being written)."""
        self._pool.shutdown(wait=True, cancel_futures=abandon)
        done = [f.result() for f in self._pending if not f.cancelled()]
        self._pending.clear()
        return done
