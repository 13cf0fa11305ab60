"""Work that waits for a worker, taken fairly across owners.

Each owner's work waits in a line of its own, first come first served; workers take
from the owners in turn (the one served longest ago first), skipping an owner who has
``per_owner`` pieces of work going already, and work that is not due yet (put back to
be tried again a moment later). So one owner's many uploads, or slow runs, hold at
most ``per_owner`` workers, and never make another owner's work wait behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Waiting(Generic[T]):
    item: T
    due: float


class FairQueue(Generic[T]):
    def __init__(
        self,
        per_owner: int = 0,
        capacity: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``per_owner``: how much of one owner's work may go at once (0: no limit);
        ``capacity``: how much may be held in all, waiting or going (0: no limit)."""
        self.per_owner = per_owner
        self.capacity = capacity
        self._clock = clock
        self._lines: OrderedDict[Hashable, deque[_Waiting[T]]] = OrderedDict()
        self._going: dict[Hashable, int] = {}
        self._size = 0
        self._going_in_all = 0
        self._closed = False
        self._changed = threading.Condition()

    def __len__(self) -> int:
        return self._size

    def put(self, owner: Hashable, item: T, delay: float = 0.0) -> bool:
        """Add ``item`` to ``owner``'s line (due after ``delay`` seconds); False, and
        nothing added, when the queue is full or closed."""
        with self._changed:
            if self._closed or (self.capacity and self._size + self._going_in_all >= self.capacity):
                return False
            self._lines.setdefault(owner, deque()).append(_Waiting(item, self._clock() + delay))
            self._size += 1
            self._changed.notify()
            return True

    def take(self, timeout: float | None = None) -> tuple[Hashable, T] | None:
        """The next item that may go, and its owner, counted as going until :meth:`done`;
        None when nothing may within ``timeout`` seconds, or the queue is closed."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while not self._closed:
                found, wait = self._next()
                if found is not None:
                    return found
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._changed.wait(wait)
            return None

    def _next(self) -> tuple[tuple[Hashable, T] | None, float | None]:
        """The first owner's first item that may go (and that owner moved to the back of
        the turn), else how long until one may be due (None: nothing waits that may)."""
        now = self._clock()
        soonest: float | None = None
        for owner, line in self._lines.items():
            if self.per_owner and self._going.get(owner, 0) >= self.per_owner:
                continue
            for index, waiting in enumerate(line):
                if waiting.due <= now:
                    del line[index]
                    self._size -= 1
                    self._going_in_all += 1
                    self._going[owner] = self._going.get(owner, 0) + 1
                    if line:
                        self._lines.move_to_end(owner)
                    else:
                        del self._lines[owner]
                    return (owner, waiting.item), None
                wait = waiting.due - now
                soonest = wait if soonest is None else min(soonest, wait)
        return None, soonest

    def done(self, owner: Hashable) -> None:
        """One of ``owner``'s items has finished going."""
        with self._changed:
            self._going_in_all -= 1
            going = self._going.get(owner, 0) - 1
            if going > 0:
                self._going[owner] = going
            else:
                self._going.pop(owner, None)
            self._changed.notify_all()

    def close(self) -> list[T]:
        """Take nothing more, wake every waiting taker; what was still waiting."""
        with self._changed:
            self._closed = True
            left = [waiting.item for line in self._lines.values() for waiting in line]
            self._lines.clear()
            self._size = 0
            self._changed.notify_all()
            return left


class Workers(Generic[T]):
    """``count`` threads, each doing ``work`` with the next item fairly due from ``queue``
    (started at the first :meth:`start`), until the queue closes."""

    def __init__(
        self, name: str, count: int, queue: FairQueue[T], work: Callable[[T], None]
    ) -> None:
        self.name, self.count, self.queue, self._work = name, count, queue, work
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._threads:
            return  # the common case, on every request: no lock taken
        with self._lock:
            if self._threads:
                return
            self._threads = [
                threading.Thread(target=self._serve, name=f"{self.name}-{number}", daemon=True)
                for number in range(self.count)
            ]
            for thread in self._threads:
                thread.start()

    def _serve(self) -> None:
        while (taken := self.queue.take()) is not None:
            owner, item = taken
            try:
                self._work(item)
            except Exception:
                log.exception("%s: its work failed", self.name)
            finally:
                self.queue.done(owner)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
