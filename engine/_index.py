"""Eligibility indexes: who may get what, found without scanning everybody.

Eligibility is declarative: a task has one ``pool`` and a ``min_grade``; an operator has a set of
``pools`` and a ``grade``. A task suits an operator when its pool is one of his and his grade is at
least its ``min_grade``. On top of that the core passes an ``accept`` callable (exclusions after a
reject, the host's optional predicate) which is checked on candidates in order.

Both indexes are bucketed by (pool, grade), and there are few grades: finding the best candidate
looks only at the head of each matching bucket (O(pools x grades)), and walks further in order only
when ``accept`` turns a head down.

- ``WaitingIndex``: per bucket an ``OrderedDict`` in arrival order (every record enters with a
  sequence number larger than any before it), so the head is the operator waiting longest.
- ``PendingIndex``: per bucket a binary heap of ``[-priority, seq, n, record]`` with lazy deletion
  (a removed record's entry is blanked and dropped when it surfaces; the heap is rebuilt when dead
  entries outnumber live ones).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class WaiterLike(Protocol):
    seq: int
    grade: int
    pools: frozenset[str]


class TaskLike(Protocol):
    seq: int
    priority: int
    pool: str
    min_grade: int
    entry: list[Any] | None


W = TypeVar("W", bound=WaiterLike)
T = TypeVar("T", bound=TaskLike)


def _seq(record: WaiterLike) -> int:
    return record.seq


class WaitingIndex(Generic[W]):
    """Waiting operators by (pool, grade), each bucket in arrival order."""

    __slots__ = ("_pools", "_size")

    def __init__(self) -> None:
        self._pools: dict[str, dict[int, OrderedDict[int, W]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, record: W) -> None:
        for pool in record.pools:
            grades = self._pools.setdefault(pool, {})
            bucket = grades.get(record.grade)
            if bucket is None:
                bucket = grades[record.grade] = OrderedDict()
            bucket[record.seq] = record
        self._size += 1

    def remove(self, record: W) -> None:
        for pool in record.pools:
            grades = self._pools[pool]
            bucket = grades[record.grade]
            del bucket[record.seq]
            if not bucket:
                del grades[record.grade]
                if not grades:
                    del self._pools[pool]
        self._size -= 1

    def best_for(self, pool: str, min_grade: int, accept: Callable[[W], bool]) -> W | None:
        """The longest-waiting operator of ``pool`` with grade >= ``min_grade`` that ``accept``s."""
        grades = self._pools.get(pool)
        if not grades:
            return None
        buckets = [bucket for grade, bucket in grades.items() if grade >= min_grade]
        best: W | None = None
        for bucket in buckets:
            head = next(iter(bucket.values()))
            if best is None or head.seq < best.seq:
                best = head
        if best is None or accept(best):
            return best
        merged: Iterable[W] = heapq.merge(*(iter(b.values()) for b in buckets), key=_seq)
        for record in merged:
            if accept(record):
                return record
        return None


class _Heap:
    __slots__ = ("dead", "items")

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self.dead = 0

    def top(self) -> list[Any] | None:
        items = self.items
        while items and items[0][3] is None:
            heapq.heappop(items)
            self.dead -= 1
        return items[0] if items else None

    def in_order(self) -> Iterator[list[Any]]:
        """Live entries best first, without changing the heap (a walk of its implicit tree)."""
        items = self.items
        if not items:
            return
        frontier: list[tuple[list[Any], int]] = [(items[0], 0)]
        size = len(items)
        while frontier:
            entry, i = heapq.heappop(frontier)
            if entry[3] is not None:
                yield entry
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    heapq.heappush(frontier, (items[child], child))


class PendingIndex(Generic[T]):
    """Pending tasks by (pool, min_grade), each bucket best first: highest priority, then oldest."""

    __slots__ = ("_n", "_pools", "_size")

    def __init__(self) -> None:
        self._pools: dict[str, dict[int, _Heap]] = {}
        self._size = 0
        self._n = 0

    def __len__(self) -> int:
        return self._size

    def add(self, record: T) -> None:
        grades = self._pools.setdefault(record.pool, {})
        heap = grades.get(record.min_grade)
        if heap is None:
            heap = grades[record.min_grade] = _Heap()
        self._n += 1
        entry = [-record.priority, record.seq, self._n, record]
        record.entry = entry
        heapq.heappush(heap.items, entry)
        self._size += 1

    def remove(self, record: T) -> None:
        entry = record.entry
        assert entry is not None, "task is not pending"
        entry[3] = None
        record.entry = None
        self._size -= 1
        grades = self._pools[record.pool]
        heap = grades[record.min_grade]
        heap.dead += 1
        live = len(heap.items) - heap.dead
        if live == 0:
            del grades[record.min_grade]
            if not grades:
                del self._pools[record.pool]
        elif heap.dead > 64 and heap.dead > live:
            heap.items = [e for e in heap.items if e[3] is not None]
            heapq.heapify(heap.items)
            heap.dead = 0

    def best_for(
        self, pools: Iterable[str], grade: int, accept: Callable[[T], bool]
    ) -> T | None:
        """The best pending task of one of ``pools``, min_grade <= ``grade``, that ``accept``s."""
        heaps: list[_Heap] = []
        best: list[Any] | None = None
        for pool in pools:
            grades = self._pools.get(pool)
            if not grades:
                continue
            for min_grade, heap in grades.items():
                if min_grade > grade:
                    continue
                top = heap.top()
                if top is None:
                    continue
                heaps.append(heap)
                if best is None or top < best:
                    best = top
        if best is None:
            return None
        record: T = best[3]
        if accept(record):
            return record
        for entry in heapq.merge(*(heap.in_order() for heap in heaps)):
            if accept(entry[3]):
                found: T = entry[3]
                return found
        return None
