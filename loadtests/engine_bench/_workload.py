"""The benchmark's configuration, its seeded workload (operators, task flow, answers) and the
naive baseline, ``LinearScanQueue``."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from queuetasks.engine import EventKind, Operator, OperatorId, TaskId, TaskSpec

RESULTS = Path(__file__).resolve().parent.parent / "results"

ASSIGN, REJECT, IGNORE = "assign", "reject", "ignore"
ENDS = (EventKind.ASSIGNED, EventKind.REJECTED, EventKind.EXPIRED, EventKind.WITHDRAWN)


@dataclass
class BenchConfig:
    operators: int = 50_000
    pools: int = 20
    grades: int = 5
    tasks: int = 100_000
    baseline_tasks: int = 2_000
    resort_tasks: int = 100  # of those, also timed with the original's re-sort (slow)
    runtime_operators: int = 50_000
    runtime_tasks: int = 50_000
    priorities: int = 10
    reject: float = 0.10  # share of offers rejected at once
    ignore: float = 0.03  # share of offers left to expire (the rest is assigned)
    offer_timeout: float = 40.0
    virtual_seconds: float = 100.0  # virtual time the task flow spans (2.5 offer timeouts)
    seed: int = 1
    gc: str = "both"  # off: disabled in timed loops; on: enabled; both: core phase both ways
    out: Path = RESULTS
    plot: bool = True
    quiet: bool = False
    quick: bool = False


QUICK = {"operators": 2_000, "tasks": 5_000, "baseline_tasks": 500, "resort_tasks": 100,
         "runtime_operators": 1_000, "runtime_tasks": 2_000}


# ---------------------------------------------------------------------------------- workload


def pool_names(n: int) -> list[str]:
    return [f"p{i:02d}" for i in range(n)]


def make_operators(cfg: BenchConfig, n: int, prefix: str = "op") -> list[Operator]:
    """Operator i: grade i % grades, 1-3 distinct pools, from a generator seeded by ``seed``."""
    rng = random.Random(cfg.seed)
    names = pool_names(cfg.pools)
    return [
        Operator(OperatorId(f"{prefix}{i}"), i % cfg.grades,
                 frozenset(rng.sample(names, rng.randint(1, min(3, cfg.pools)))))
        for i in range(n)
    ]


class Workload:
    """The task flow and the operators' answers, each from its own seeded generator so that the
    sequence does not depend on how calls interleave."""

    def __init__(self, cfg: BenchConfig, salt: int = 0) -> None:
        self.cfg = cfg
        self.pools = pool_names(cfg.pools)
        self._tasks = random.Random(cfg.seed * 1_000_003 + 1 + salt)
        self._answers = random.Random(cfg.seed * 1_000_003 + 2 + salt)
        self.n = 0

    def task(self, prefix: str = "t") -> TaskSpec:
        self.n += 1
        r = self._tasks
        return TaskSpec(TaskId(f"{prefix}{self.n}"), r.randrange(self.cfg.priorities),
                        r.choice(self.pools), r.randrange(self.cfg.grades))

    def answer(self, *, allow_ignore: bool = True) -> str:
        x = self._answers.random()
        if x < self.cfg.reject:
            return REJECT
        if allow_ignore and x < self.cfg.reject + self.cfg.ignore:
            return IGNORE
        return ASSIGN


# ---------------------------------------------------------------------------------- baseline


class LinearScanQueue:
    """The naive baseline: waiting operators in a list in arrival order; each task scans it from
    the front for the first eligible one (pool in his pools, grade >= min_grade, not excluded),
    as the C# original walked its queue (it also re-sorted it first; this does not)."""

    __slots__ = ("_seq", "depths", "since", "waiting")

    def __init__(self, operators: Iterable[Operator] = ()) -> None:
        self.waiting: list[Operator] = list(operators)
        self.since = {op.id: i for i, op in enumerate(self.waiting)}
        self._seq = len(self.waiting)
        #: operators examined per dispatch
        self.depths: list[int] = []

    def __len__(self) -> int:
        return len(self.waiting)

    def add(self, operator: Operator) -> None:
        self.waiting.append(operator)
        self._seq += 1
        self.since[operator.id] = self._seq

    def dispatch(self, pool: str, min_grade: int,
                 excluded: set[OperatorId] | None = None) -> Operator | None:
        """Take the first eligible waiting operator out of the queue, or None."""
        for i, op in enumerate(self.waiting):
            if (pool in op.pools and op.grade >= min_grade
                    and (excluded is None or op.id not in excluded)):
                del self.waiting[i]
                self.depths.append(i + 1)
                return op
        self.depths.append(len(self.waiting))
        return None

    def pick_resorting(self, pool: str, min_grade: int) -> Operator | None:
        """The original's own way (its ``Peek``): sort the whole queue by waiting time, then
        take the first eligible one. Changes nothing; sorting an already sorted list is
        timsort's best case, so this flatters the original."""
        since = self.since
        for op in sorted(self.waiting, key=lambda o: since[o.id]):
            if pool in op.pools and op.grade >= min_grade:
                return op
        return None
