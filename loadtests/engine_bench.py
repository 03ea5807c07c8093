"""Engine micro-benchmark: the sans-IO core and the trio runtime, with no HTTP.

    python -m loadtests.engine_bench            # 50,000 operators, 100,000 tasks (about a minute)
    python -m loadtests.engine_bench --quick    # a smoke run of a few seconds

Phases, all in this one process on one core:

1. core: a ``Core`` with N waiting operators (operator i has grade i % grades and 1-3 of the pools,
   drawn from a seeded ``random.Random``); its memory per waiting operator (tracemalloc: what the
   core allocated while the operators opened their tabs, and the total with the ``Operator``
   objects); then T tasks (random pool, min_grade, priority) on a virtual clock. Every offer is
   resolved at once (assign + confirm, or reject) or left to expire 40 virtual seconds later, and
   every operator whose offer ended opens a new tab, so about N keep waiting. Each core call is
   timed with ``perf_counter_ns``; a *dispatch* is an ``add_task`` call that produced an offer.
2. baseline: from the queue the core phase left (all N waiting, in the core's queue order), the
   same new tasks go to the core and to ``LinearScanQueue``, a list of waiting operators scanned
   from the front for the first eligible one per task (what the C# original did, minus its
   re-sort): per-dispatch cost of both on identical inputs, the speed-up, how far the scan went,
   and a cross-check that both picked the same operator every time (the index must choose what a
   FIFO scan would). The first ``--resort-tasks`` also time the original's own ``Peek`` (sort the
   whole queue by waiting time, then scan), which is what made it O(n log n) per task.
3. runtime: the same workload through the trio ``Engine`` (``open_stream``, ``add_task``,
   ``TabStream.receive``, ``assign`` / ``reject``) under ``trio.run`` with a ``MockClock`` (offer
   deadlines fire on virtual time) and the default ``Hooks``: events/s and per-dispatch cost.

The garbage collector is disabled in the timed loops by default (collected just before);
``--gc on`` keeps it enabled, ``--gc both`` runs the core phase a second time with it enabled and
reports both. Writes ``loadtests/results/engine-bench-<stamp>.json`` (and ``-latest.json``) and a
latency CDF plot (``.png``) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import trio
import trio.testing
from queuetasks.engine import (
    Core,
    CoreConfig,
    EndedMessage,
    Engine,
    EngineConfig,
    EngineEvent,
    EventKind,
    Notify,
    OfferMessage,
    Operator,
    OperatorId,
    OperatorStatus,
    TabId,
    TabStream,
    TaskId,
    TaskSpec,
)

RESULTS = Path(__file__).resolve().parent / "results"
Json = dict[str, Any]
perf_ns = time.perf_counter_ns

ASSIGN, REJECT, IGNORE = "assign", "reject", "ignore"
ENDS = (EventKind.ASSIGNED, EventKind.REJECTED, EventKind.EXPIRED, EventKind.WITHDRAWN)

# The targets for this 2-core machine: (key, label, goal text, check).
TARGETS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("dispatch_p99_us", "dispatch p99 at {n:,} waiting (core)", "< 50 us", lambda v: v < 50),
    ("events_per_s", "offers+resolutions per second (core, 1 core)", ">= 20,000/s",
     lambda v: v >= 20_000),
    ("bytes_per_operator", "core memory per waiting operator", "<= 1,024 B",
     lambda v: v <= 1024),
    ("speedup_p50", "speed-up over linear scan at {n:,} (p50)", ">= 100x", lambda v: v >= 100),
    ("resort_speedup_p50", "  same, over the original's re-sort + scan", ">= 100x",
     lambda v: v >= 100),
]


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


# ---------------------------------------------------------------------------------- helpers


def pct(values: list[int] | list[float], q: float) -> float | None:
    """Nearest-rank percentile of unsorted values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def summary_ns(values: list[int]) -> Json:
    """count, p50, p90, p99, max, mean in microseconds."""
    if not values:
        return {"n": 0, "p50_us": None, "p90_us": None, "p99_us": None, "max_us": None,
                "mean_us": None, "total_s": 0.0}
    s = sorted(values)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))] / 1000, 3)

    return {"n": len(s), "p50_us": at(50), "p90_us": at(90), "p99_us": at(99),
            "max_us": round(s[-1] / 1000, 3), "mean_us": round(statistics.fmean(s) / 1000, 3),
            "total_s": round(sum(s) / 1e9, 4)}


class Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def every(self, label: str, i: int, total: int, started: float) -> None:
        step = max(1, total // 10)
        if not self.quiet and i and i % step == 0:
            el = time.perf_counter() - started
            self(f"{label}: {i:,}/{total:,} ({el:.1f} s, {i / el:,.0f}/s)")


@contextmanager
def gc_mode(enabled: bool) -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    if not enabled:
        gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


# ---------------------------------------------------------------------------------- core phase


class CoreDriver:
    """Plays the runtime's part for a bare ``Core``: opens tabs, answers offers, reopens tabs for
    operators whose offer ended, and checks every event against what it knows."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.core = Core(CoreConfig(offer_timeout=cfg.offer_timeout))
        self.operators: dict[OperatorId, Operator] = {}
        self.now = 0.0
        self.next_tab = 0
        self.times: dict[str, list[int]] = {k: [] for k in (
            "dispatch", "add_pending", "assign", "confirm", "reject", "expire", "rewait")}
        self.idle_advance_ns = 0  # advance() calls with nothing due, summed
        self.offers: deque[tuple[TaskId, OperatorId]] = deque()
        self.ended: deque[OperatorId] = deque()
        self.open: dict[TaskId, OperatorId] = {}
        self.assigned: dict[TaskId, OperatorId] = {}
        self.counts: dict[str, int] = dict.fromkeys(
            ("offered", "assigned", "rejected", "expired", "withdrawn", "cancelled"), 0)
        self.errors: list[str] = []

    # ---- effects

    def _take(self, fx: list[Any]) -> None:
        for effect in fx:
            if type(effect) is not Notify:
                continue
            ev = effect.event
            kind = ev.kind
            if kind is EventKind.OFFERED:
                self.counts["offered"] += 1
                self.offers.append((ev.task_id, ev.operator_id))  # type: ignore[arg-type]
                self.open[ev.task_id] = ev.operator_id  # type: ignore[assignment]
            elif kind in ENDS:
                self.counts[kind.value] += 1
                if self.open.pop(ev.task_id, None) != ev.operator_id:
                    self.errors.append(f"{kind.value} {ev.task_id} for {ev.operator_id}, "
                                       "who had not been offered it")
                if kind is EventKind.ASSIGNED:
                    if ev.task_id in self.assigned:
                        self.errors.append(f"task {ev.task_id} assigned twice")
                    self.assigned[ev.task_id] = ev.operator_id  # type: ignore[assignment]
                self.ended.append(ev.operator_id)  # type: ignore[arg-type]
            elif kind is EventKind.CANCELLED:
                self.counts["cancelled"] += 1
                self.errors.append(f"task {ev.task_id} cancelled ({ev.detail})")

    def _timed(self, kind: str, fn: Callable[..., list[Any]], *args: Any) -> None:
        t0 = perf_ns()
        fx = fn(*args)
        self.times[kind].append(perf_ns() - t0)
        self._take(fx)

    # ---- inputs

    def open_tab(self, op_id: OperatorId, kind: str | None = "rewait") -> None:
        self.next_tab += 1
        op = self.operators[op_id]
        if kind is None:
            self._take(self.core.open_tab(op, TabId(self.next_tab), self.now))
        else:
            self._timed(kind, self.core.open_tab, op, TabId(self.next_tab), self.now)

    def add(self, spec: TaskSpec) -> OperatorId | None:
        """Add a task; the operator it was offered to at once, or None."""
        before = self.counts["offered"]
        t0 = perf_ns()
        fx = self.core.add_task(spec, self.now)
        dt = perf_ns() - t0
        self._take(fx)
        if self.counts["offered"] > before:
            self.times["dispatch"].append(dt)
            return self.offers[-1][1]
        self.times["add_pending"].append(dt)
        return None

    def advance(self, now: float) -> None:
        self.now = now
        t0 = perf_ns()
        fx = self.core.advance(now)
        dt = perf_ns() - t0
        if fx:
            self.times["expire"].append(dt)
            self._take(fx)
        else:
            self.idle_advance_ns += dt

    def answer(self, task: TaskId, op: OperatorId, what: str) -> None:
        if what == ASSIGN:
            self._timed("assign", self.core.assign, op, task, self.now)
            self._timed("confirm", self.core.confirm, op, task, True, self.now)
        elif what == REJECT:
            self._timed("reject", self.core.reject, op, task, self.now)
        # IGNORE: the offer stays open until its deadline, in advance()

    def settle(self, answer: Callable[[], str]) -> None:
        """Answer every new offer and reopen a tab for every operator whose offer ended."""
        while self.offers or self.ended:
            while self.offers:
                task, op = self.offers.popleft()
                self.answer(task, op, answer())
            while self.ended:
                self.open_tab(self.ended.popleft())

    def core_ns(self) -> int:
        return sum(sum(v) for v in self.times.values()) + self.idle_advance_ns


def measure_open(drv: CoreDriver, cfg: BenchConfig, progress: Progress) -> Json:
    """Open one tab per operator, measuring what the core allocates (tracemalloc)."""
    gc.collect()
    rss0 = _rss()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # The operators as the host would build them (ids, pool sets), then what the core adds.
    ops = make_operators(cfg, cfg.operators)
    drv.operators = {op.id: op for op in ops}
    mid = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    for i, op in enumerate(ops):
        drv.open_tab(op.id, kind=None)
        progress.every("core: opening tabs (tracemalloc on)", i, len(ops), t0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss1 = _rss()
    waiting = drv.core.statistics()["waiting_operators"]
    return {
        "waiting_operators": waiting,
        "core_bytes": after - mid,
        "core_bytes_per_operator": round((after - mid) / max(1, waiting), 1),
        "total_bytes_per_operator": round((after - base) / max(1, waiting), 1),
        "rss_delta_per_operator": (None if rss0 is None or rss1 is None
                                   else round((rss1 - rss0) / max(1, waiting), 1)),
        "method": "tracemalloc: bytes traced after opening one tab per operator minus before "
                  "(core only), and minus before building the Operator objects (total); the "
                  "RSS delta includes tracemalloc's own bookkeeping",
    }


def run_core(cfg: BenchConfig, progress: Progress, *, gc_enabled: bool,
             measure_memory: bool) -> tuple[CoreDriver, Json]:
    drv = CoreDriver(cfg)
    label = f"core (gc {'on' if gc_enabled else 'off'})"
    if measure_memory:
        memory = measure_open(drv, cfg, progress)
    else:
        memory = None
        drv.operators = {op.id: op for op in make_operators(cfg, cfg.operators)}
        for op_id in drv.operators:
            drv.open_tab(op_id, kind=None)
    for v in drv.times.values():
        v.clear()
    wl = Workload(cfg)
    dt = cfg.virtual_seconds / max(1, cfg.tasks)
    progress(f"{label}: {cfg.operators:,} waiting; {cfg.tasks:,} tasks")
    with gc_mode(gc_enabled):
        t0 = time.perf_counter()
        for i in range(cfg.tasks):
            drv.advance(drv.now + dt)
            drv.add(wl.task())
            drv.settle(wl.answer)
            progress.every(label, i, cfg.tasks, t0)
        wall = time.perf_counter() - t0
        core_s = drv.core_ns() / 1e9
        waiting_at_end = drv.core.statistics()["waiting_operators"]
        counts = dict(drv.counts)
        calls = {k: summary_ns(v) for k, v in drv.times.items()}
        all_calls = summary_ns([x for v in drv.times.values() for x in v])
        dispatch_ns = list(drv.times["dispatch"])
        # Drain (not timed): the ignored offers expire; every re-offer is then assigned.
        t1 = time.perf_counter()
        drv.advance(drv.now + cfg.offer_timeout + 1)
        drv.settle(lambda: ASSIGN)
        drain = time.perf_counter() - t1
    stats = drv.core.statistics()
    events = counts["offered"] + sum(counts[k.value] for k in ENDS)
    lost = cfg.tasks - len(drv.assigned)
    result = {
        "gc": "enabled" if gc_enabled else "disabled (collected before)",
        "memory": memory,
        "calls": calls,
        "all_event_calls": all_calls,
        "dispatch_ns": dispatch_ns,
        "counts": counts,
        "events": events,
        "drain_s": round(drain, 3),
        "loop_wall_s": round(wall, 3),
        "loop_core_s": round(core_s, 3),
        "events_per_s_wall": round(events / wall),
        "events_per_s_core": round(events / core_s),
        "waiting_at_end_of_loop": waiting_at_end,
        "verify": {
            "tasks": cfg.tasks,
            "assigned_once": len(drv.assigned),
            "lost": lost,
            "offered_total": drv.counts["offered"],
            "ends_total": sum(drv.counts[k.value] for k in ENDS),
            "pending_after_drain": stats["pending_tasks"],
            "open_offers_after_drain": stats["open_offers"],
            "live_tasks_after_drain": stats["live_tasks"],
            "waiting_after_drain": stats["waiting_operators"],
            "errors": drv.errors[:20],
            "ok": (lost == 0 and not drv.errors and stats["pending_tasks"] == 0
                   and stats["open_offers"] == 0 and stats["live_tasks"] == 0
                   and stats["waiting_operators"] == cfg.operators
                   and drv.counts["offered"] == sum(drv.counts[k.value] for k in ENDS)),
        },
    }
    return drv, result


# ---------------------------------------------------------------------------------- lockstep


def run_lockstep(drv: CoreDriver, cfg: BenchConfig, progress: Progress, *,
                 gc_enabled: bool) -> Json:
    """The same new tasks, answers and re-waits to the core and to ``LinearScanQueue``, from the
    queue the core holds now (every operator waiting); per-dispatch cost of each, and whether
    both chose the same operator (a mismatch re-syncs the baseline from the core's queue)."""
    core = drv.core

    def core_queue() -> list[Operator]:
        return [drv.operators[e.operator_id] for e in core.queue()
                if e.status is OperatorStatus.WAITING]

    naive = LinearScanQueue(core_queue())
    wl = Workload(cfg, salt=7)
    core_ns: list[int] = []
    naive_ns: list[int] = []
    resort_ns: list[int] = []
    resort_mismatches = 0
    redispatch_core: list[int] = []
    redispatch_naive: list[int] = []
    compared = mismatches = none_both = 0
    first_mismatches: list[str] = []
    dt = cfg.virtual_seconds / max(1, cfg.tasks)
    progress(f"baseline: {len(naive):,} waiting; {cfg.baseline_tasks:,} tasks to both")

    def check(task: TaskId, got: OperatorId | None, naive_op: Operator | None) -> None:
        nonlocal compared, mismatches, none_both, naive
        compared += 1
        want = naive_op.id if naive_op is not None else None
        if got == want:
            none_both += got is None
            return
        mismatches += 1
        if len(first_mismatches) < 10:
            first_mismatches.append(f"{task}: core {got}, linear scan {want}")
        naive = LinearScanQueue(core_queue())

    with gc_mode(gc_enabled):
        t0 = time.perf_counter()
        for i in range(cfg.baseline_tasks):
            drv.advance(drv.now + dt)
            spec = wl.task("b")
            got = drv.add(spec)
            core_ns.append(drv.times["dispatch"][-1] if got is not None
                           else drv.times["add_pending"][-1])
            if i < cfg.resort_tasks:
                a = perf_ns()
                resorted = naive.pick_resorting(spec.pool, spec.min_grade)
                resort_ns.append(perf_ns() - a)
            a = perf_ns()
            naive_op = naive.dispatch(spec.pool, spec.min_grade)
            naive_ns.append(perf_ns() - a)
            if i < cfg.resort_tasks and resorted is not naive_op:
                resort_mismatches += 1
            check(spec.id, got, naive_op)
            excluded: set[OperatorId] = set()
            while drv.offers:
                task, op = drv.offers.popleft()
                what = wl.answer(allow_ignore=False)
                reject_fx = len(drv.times["reject"])
                drv.answer(task, op, what)
                if what == REJECT:
                    # The core re-offered inside reject(); the baseline scans again.
                    redispatch_core.append(drv.times["reject"][reject_fx])
                    excluded.add(op)
                    a = perf_ns()
                    naive_op = naive.dispatch(spec.pool, spec.min_grade, excluded)
                    redispatch_naive.append(perf_ns() - a)
                    check(task, drv.offers[-1][1] if drv.offers else None, naive_op)
                while drv.ended:
                    back = drv.ended.popleft()
                    drv.open_tab(back)
                    naive.add(drv.operators[back])
            progress.every("baseline", i, cfg.baseline_tasks, t0)
    core_s, naive_s, resort_s = summary_ns(core_ns), summary_ns(naive_ns), summary_ns(resort_ns)
    depths = naive.depths
    return {
        "gc": "enabled" if gc_enabled else "disabled (collected before)",
        "waiting": len(naive),
        "tasks": cfg.baseline_tasks,
        "core_dispatch": core_s,
        "linear_scan_dispatch": naive_s,
        "core_redispatch_after_reject": summary_ns(redispatch_core),
        "linear_scan_redispatch_after_reject": summary_ns(redispatch_naive),
        "speedup_p50": round(naive_s["p50_us"] / core_s["p50_us"], 1),
        "speedup_mean": round(naive_s["mean_us"] / core_s["mean_us"], 1),
        "scan_depth": {"mean": round(statistics.fmean(depths), 1), "p50": pct(depths, 50),
                       "p99": pct(depths, 99), "max": max(depths)},
        "resort_tasks": len(resort_ns),
        "resort_scan_dispatch": resort_s,
        "resort_speedup_p50": (round(resort_s["p50_us"] / core_s["p50_us"], 1)
                               if resort_ns else None),
        "resort_speedup_mean": (round(resort_s["mean_us"] / core_s["mean_us"], 1)
                                if resort_ns else None),
        "resort_mismatches": resort_mismatches,
        "core_ns": core_ns,
        "linear_scan_ns": naive_ns,
        "resort_scan_ns": resort_ns,
        "crosscheck": {"compared": compared, "mismatches": mismatches,
                       "no_operator_in_both": none_both, "examples": first_mismatches},
        "note": "the core's time is its whole add_task (index lookup, offer, effects, timer); the "
                "linear scan's is the scan and removal only; the re-sort variant (the original's "
                "Peek: sort by waiting time, then first eligible) ran on the first resort_tasks "
                "tasks only",
    }


# ---------------------------------------------------------------------------------- runtime


async def _runtime_main(cfg: BenchConfig, clock: trio.testing.MockClock,
                        progress: Progress, gc_enabled: bool) -> Json:
    engine = Engine(EngineConfig(offer_timeout=cfg.offer_timeout))
    events: deque[EngineEvent] = deque()
    engine.add_listener(events.append)
    ops = {op.id: op for op in make_operators(cfg, cfg.runtime_operators, prefix="r")}
    streams: dict[OperatorId, TabStream] = {}
    times: dict[str, list[int]] = {k: [] for k in ("dispatch", "add_pending", "assign", "reject",
                                                   "rewait")}
    counts = dict.fromkeys(("offered", "assigned", "rejected", "expired", "withdrawn",
                            "cancelled"), 0)
    open_offers: dict[TaskId, OperatorId] = {}
    assigned: set[TaskId] = set()
    errors: list[str] = []
    wl = Workload(cfg, salt=11)

    async def reopen(op_id: OperatorId) -> None:
        stream = streams.pop(op_id)
        ended = None
        while True:
            try:
                msg = await stream.receive()
            except trio.EndOfChannel:
                break
            if isinstance(msg, EndedMessage):
                ended = msg
        if ended is None:
            errors.append(f"{op_id}: stream ended without an offer-ended message")
        stream.close()
        a = perf_ns()
        streams[op_id] = await engine.open_stream(ops[op_id])
        times["rewait"].append(perf_ns() - a)

    async def settle(answer: Callable[[], str]) -> None:
        while events:
            ev = events.popleft()
            kind = ev.kind
            op = ev.operator_id
            if kind is EventKind.OFFERED:
                assert op is not None
                counts["offered"] += 1
                open_offers[ev.task_id] = op
                what = answer()
                if what == ASSIGN:
                    msg = await streams[op].receive()
                    if not isinstance(msg, OfferMessage) or msg.task_id != ev.task_id:
                        errors.append(f"{op} read {msg!r}, expected the offer of {ev.task_id}")
                    a = perf_ns()
                    await engine.assign(op, ev.task_id)
                    times["assign"].append(perf_ns() - a)
                elif what == REJECT:
                    a = perf_ns()
                    engine.reject(op, ev.task_id)
                    times["reject"].append(perf_ns() - a)
            elif kind in ENDS:
                assert op is not None
                counts[kind.value] += 1
                if open_offers.pop(ev.task_id, None) != op:
                    errors.append(f"{kind.value} {ev.task_id} for {op}, not offered to him")
                if kind is EventKind.ASSIGNED:
                    if ev.task_id in assigned:
                        errors.append(f"task {ev.task_id} assigned twice")
                    assigned.add(ev.task_id)
                await reopen(op)
            elif kind is EventKind.CANCELLED:
                counts["cancelled"] += 1
                errors.append(f"task {ev.task_id} cancelled")

    result: Json = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        gc.collect()
        tracemalloc.start()
        m0 = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        for i, op in enumerate(ops.values()):
            streams[op.id] = await engine.open_stream(op)
            progress.every("runtime: opening streams (tracemalloc on)", i, len(ops), t0)
        gc.collect()
        m1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        waiting = engine.statistics()["waiting_operators"]
        result["memory"] = {"waiting_operators": waiting,
                            "bytes_per_operator": round((m1 - m0) / max(1, waiting), 1),
                            "method": "tracemalloc around open_stream for every operator "
                                      "(core records plus TabStream and engine maps)"}
        dt = cfg.virtual_seconds / max(1, cfg.runtime_tasks)
        progress(f"runtime: {waiting:,} streams waiting; {cfg.runtime_tasks:,} tasks")
        with gc_mode(gc_enabled):
            t0 = time.perf_counter()
            for i in range(cfg.runtime_tasks):
                clock.jump(dt)
                await trio.lowlevel.checkpoint()  # the engine's timer task runs expiries
                await settle(wl.answer)
                spec = wl.task("r")
                a = perf_ns()
                engine.add_task(spec.id, priority=spec.priority, pool=spec.pool,
                                min_grade=spec.min_grade)
                took = perf_ns() - a
                # settle() left no events behind, so an OFFERED one now is this task's.
                if any(e.kind is EventKind.OFFERED for e in events):
                    times["dispatch"].append(took)
                else:
                    times["add_pending"].append(took)
                await settle(wl.answer)
                progress.every("runtime", i, cfg.runtime_tasks, t0)
            wall = time.perf_counter() - t0
            stats_loop = engine.statistics()
            loop_counts = dict(counts)
            calls = {k: summary_ns(v) for k, v in times.items()}
            dispatch_ns = list(times["dispatch"])
            clock.jump(cfg.offer_timeout + 1)
            await trio.testing.wait_all_tasks_blocked()
            await settle(lambda: ASSIGN)
        stats = engine.statistics()
        nursery.cancel_scope.cancel()
    events_n = loop_counts["offered"] + sum(loop_counts[k.value] for k in ENDS)
    lost = cfg.runtime_tasks - len(assigned)
    result.update({
        "gc": "enabled" if gc_enabled else "disabled (collected before)",
        "operators": cfg.runtime_operators,
        "tasks": cfg.runtime_tasks,
        "calls": calls,
        "dispatch_ns": dispatch_ns,
        "counts": loop_counts,
        "events": events_n,
        "loop_wall_s": round(wall, 3),
        "events_per_s_wall": round(events_n / wall),
        "waiting_at_end_of_loop": stats_loop["waiting_operators"],
        "verify": {
            "tasks": cfg.runtime_tasks,
            "assigned_once": len(assigned),
            "lost": lost,
            "pending_after_drain": stats["pending_tasks"],
            "open_offers_after_drain": stats["open_offers"],
            "waiting_after_drain": stats["waiting_operators"],
            "errors": errors[:20],
            "ok": (lost == 0 and not errors and stats["pending_tasks"] == 0
                   and stats["open_offers"] == 0
                   and stats["waiting_operators"] == cfg.runtime_operators),
        },
    })
    return result


def run_runtime(cfg: BenchConfig, progress: Progress, *, gc_enabled: bool) -> Json:
    clock = trio.testing.MockClock()
    return trio.run(_runtime_main, cfg, clock, progress, gc_enabled, clock=clock)


# ---------------------------------------------------------------------------------- report


def evaluate(doc: Json) -> list[Json]:
    core, base = doc["core"], doc["baseline"]
    values = {
        "dispatch_p99_us": core["calls"]["dispatch"]["p99_us"],
        "events_per_s": core["events_per_s_wall"],
        "bytes_per_operator": core["memory"]["core_bytes_per_operator"],
        "speedup_p50": base["speedup_p50"],
        "resort_speedup_p50": base["resort_speedup_p50"],
    }
    out = []
    for key, label, goal, ok in TARGETS:
        v = values[key]
        if v is None:
            continue
        out.append({"key": key, "label": label.format(n=doc["config"]["operators"]),
                    "value": v, "goal": goal, "pass": v is not None and ok(v)})
    return out


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def text_report(doc: Json) -> str:
    cfg, env = doc["config"], doc["environment"]
    core, base, rt = doc["core"], doc["baseline"], doc.get("runtime")
    lines = [
        f"engine_bench {doc['started']}: {cfg['operators']:,} operators, {cfg['pools']} pools, "
        f"{cfg['grades']} grades, {cfg['tasks']:,} tasks (answers: {cfg['reject']:.0%} reject, "
        f"{cfg['ignore']:.0%} expire, rest assign); Python {env['python']}, "
        f"{env['cpus']} CPUs; gc {core['gc']} in the timed loops",
        "",
        f"core, per call (us)              {'calls':>9} {'p50':>8} {'p90':>8} {'p99':>8} "
        f"{'max':>9} {'mean':>8}",
    ]
    names = {"dispatch": "dispatch (add_task -> offer)", "add_pending": "add_task -> pending",
             "assign": "assign", "confirm": "confirm (host ok)",
             "reject": "reject (+ re-offer)", "expire": "advance (expiries + re-offer)",
             "rewait": "rewait (open_tab)"}

    def row(label: str, s: Json) -> str:
        return (f"  {label:<31}{s['n']:>9,} {_us(s['p50_us']):>8} {_us(s['p90_us']):>8} "
                f"{_us(s['p99_us']):>8} {_us(s['max_us']):>9} {_us(s['mean_us']):>8}")

    for k, s in core["calls"].items():
        if s["n"]:
            lines.append(row(names.get(k, k), s))
    lines.append(row("all calls with an event", core["all_event_calls"]))
    if doc.get("core_gc_on"):
        g = doc["core_gc_on"]
        lines.append(row("dispatch, gc enabled", g["calls"]["dispatch"]))
        lines.append(row("all calls, gc enabled", g["all_event_calls"]))
    lines += [
        f"  throughput: {core['events']:,} offers+resolutions in {core['loop_wall_s']:.2f} s of "
        f"loop = {core['events_per_s_wall']:,}/s wall (driver included); "
        f"{core['events_per_s_core']:,}/s counting core calls only",
    ]
    if doc.get("core_gc_on"):
        g = doc["core_gc_on"]
        lines.append(f"  with gc enabled: {g['events_per_s_wall']:,}/s wall, "
                     f"{g['events_per_s_core']:,}/s core only")
    m = core["memory"]
    lines += [
        f"  memory: {m['core_bytes_per_operator']:,.0f} B of core per waiting operator "
        f"({m['waiting_operators']:,} waiting; {m['total_bytes_per_operator']:,.0f} B with the "
        f"Operator objects; RSS delta {m['rss_delta_per_operator']} B incl. tracemalloc)",
        f"  waiting at the end of the loop: {core['waiting_at_end_of_loop']:,}",
        "",
        f"baseline at {base['waiting']:,} waiting, {base['tasks']:,} tasks, same inputs to both "
        f"(per dispatch, us)   {'p50':>8} {'p99':>8} {'mean':>8}",
    ]
    for label, s in (("linear scan (first eligible)", base["linear_scan_dispatch"]),
                     ("core add_task", base["core_dispatch"]),
                     (f"original's re-sort + scan (first {base['resort_tasks']:,} tasks)",
                      base["resort_scan_dispatch"]),
                     ("linear scan, re-dispatch", base["linear_scan_redispatch_after_reject"]),
                     ("core reject + re-offer", base["core_redispatch_after_reject"])):
        lines.append(f"  {label:<57}{_us(s['p50_us']):>8} {_us(s['p99_us']):>8} "
                     f"{_us(s['mean_us']):>8}")
    cc, depth = base["crosscheck"], base["scan_depth"]
    lines += [
        f"  speed-up over the linear scan: {base['speedup_p50']:,.1f}x at p50, "
        f"{base['speedup_mean']:,.1f}x mean; the scan examined {depth['mean']:,} operators per "
        f"dispatch on average (p50 {depth['p50']:,}, p99 {depth['p99']:,}, max {depth['max']:,})",
        f"  speed-up over the re-sort + scan: {base['resort_speedup_p50'] or 0:,.1f}x at p50, "
        f"{base['resort_speedup_mean'] or 0:,.1f}x mean",
        f"  same operator chosen: {cc['compared'] - cc['mismatches']:,}/{cc['compared']:,} "
        f"(core vs linear scan), re-sort disagreed {base['resort_mismatches']} times",
    ]
    if rt:
        c = rt["calls"]
        lines += [
            "",
            f"runtime (trio Engine, MockClock, default Hooks): {rt['operators']:,} streams, "
            f"{rt['tasks']:,} tasks",
            f"  dispatch (engine.add_task) p50 {_us(c['dispatch']['p50_us'])} us, p99 "
            f"{_us(c['dispatch']['p99_us'])} us, max {_us(c['dispatch']['max_us'])} us; "
            f"assign p50 {_us(c['assign']['p50_us'])} us; open_stream p50 "
            f"{_us(c['rewait']['p50_us'])} us",
            f"  throughput: {rt['events']:,} offers+resolutions in {rt['loop_wall_s']:.2f} s = "
            f"{rt['events_per_s_wall']:,}/s (stream reads, re-opens and trio scheduling included)",
            f"  memory: {rt['memory']['bytes_per_operator']:,.0f} B per waiting operator "
            f"(core + TabStream + engine maps)",
        ]
    lines += ["", f"{'target':<48} {'measured':>12}  {'goal':<12} result"]
    for t in doc["targets"]:
        v = t["value"]
        if t["key"] == "dispatch_p99_us":
            shown = f"{v:,.2f} us"
        elif t["key"] == "events_per_s":
            shown = f"{v:,}/s"
        elif t["key"] == "bytes_per_operator":
            shown = f"{v:,.0f} B"
        else:
            shown = f"{v:,.1f}x"
        lines.append(f"{t['label']:<48} {shown:>12}  {t['goal']:<12} "
                     f"{'PASS' if t['pass'] else 'MISS'}")
    v = doc["verify"]
    lines += ["", f"correctness: {'OK' if v['ok'] else 'FAILED'} - {v['text']}"]
    return "\n".join(lines)


def draw_plot(doc: Json, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("core add_task, main loop", doc["core"]["dispatch_ns"], "tab:blue", "-"),
        ("core add_task, same inputs as the scan", doc["baseline"]["core_ns"], "tab:blue", "--"),
        ("linear scan (first eligible)", doc["baseline"]["linear_scan_ns"], "tab:red", "-"),
        ("original's re-sort + scan", doc["baseline"]["resort_scan_ns"], "tab:purple", "-"),
    ]
    if doc.get("core_gc_on"):
        series.append(("core add_task, gc enabled", doc["core_gc_on"]["dispatch_ns"],
                       "tab:cyan", ":"))
    if doc.get("runtime"):
        series.append(("Engine.add_task (trio runtime)", doc["runtime"]["dispatch_ns"],
                       "tab:green", "-"))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, ns, color, style in series:
        if not ns:
            continue
        xs = sorted(x / 1000 for x in ns)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.plot(xs, ys, label=f"{label} (n={len(xs):,})", color=color, linestyle=style)
    ax.axvline(50, color="grey", linestyle=":", linewidth=1)
    ax.text(50, 0.02, " 50 us", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("time per dispatch (us, log)")
    ax.set_ylabel("fraction of dispatches")
    cfg = doc["config"]
    ax.set_title(f"Dispatch latency CDF at {cfg['operators']:,} waiting operators "
                 f"({cfg['pools']} pools, {cfg['grades']} grades)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


CDF_QUANTILES = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9,
                 100)


def for_json(doc: Any) -> Any:
    """The document without the raw samples (``*_ns`` lists): each becomes ``*_cdf_us``, a list
    of [quantile %, microseconds]."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if k.endswith("_ns") and isinstance(v, list):
                out[k[:-3] + "_cdf_us"] = [[q, round(x / 1000, 3)] for q in CDF_QUANTILES
                                           if (x := pct(v, q)) is not None]
            else:
                out[k] = for_json(v)
        return out
    if isinstance(doc, list):
        return [for_json(v) for v in doc]
    return doc


def write_results(doc: Json, out: Path, plot: bool) -> list[Path]:
    """``engine-bench-<stamp>.json`` (and ``.png``) in ``out``, with ``-latest`` copies."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = doc["stamp"]
    paths = [out / f"engine-bench-{stamp}.json"]
    paths[0].write_text(json.dumps(for_json(doc), indent=1))
    if plot:
        png = out / f"engine-bench-{stamp}.png"
        if draw_plot(doc, png):
            paths.append(png)
    for p in list(paths):
        shutil.copyfile(p, out / p.name.replace(stamp, "latest"))
    return paths


# ---------------------------------------------------------------------------------- main


def run(cfg: BenchConfig) -> Json:
    """Every phase; the whole result document (also written to ``cfg.out``)."""
    progress = Progress(cfg.quiet)
    gc_on = cfg.gc == "on"
    doc: Json = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "stamp": time.strftime("%Y%m%d-%H%M%S"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform(), "trio": trio.__version__},
    }
    drv, doc["core"] = run_core(cfg, progress, gc_enabled=gc_on, measure_memory=True)
    doc["baseline"] = run_lockstep(drv, cfg, progress, gc_enabled=gc_on)
    del drv
    gc.collect()
    if cfg.gc == "both":
        drv2, doc["core_gc_on"] = run_core(cfg, progress, gc_enabled=True, measure_memory=False)
        del drv2
        gc.collect()
    if cfg.runtime_operators > 0 and cfg.runtime_tasks > 0:
        doc["runtime"] = run_runtime(cfg, progress, gc_enabled=gc_on)
    doc["targets"] = evaluate(doc)
    checks = [(name, doc[key]["verify"]) for key, name in
              (("core", "core"), ("core_gc_on", "core gc on"), ("runtime", "runtime"))
              if doc.get(key)]
    base = doc["baseline"]
    cc = base["crosscheck"]
    ok = (all(c["ok"] for _, c in checks) and cc["mismatches"] == 0
          and base["resort_mismatches"] == 0)
    doc["verify"] = {
        "ok": ok,
        "text": "; ".join(
            [f"{name}: {c['assigned_once']:,}/{c['tasks']:,} tasks assigned once each, "
             f"{c['lost']} lost, {len(c['errors'])} errors" for name, c in checks]
            + [f"index and linear scan chose the same operator in "
               f"{cc['compared'] - cc['mismatches']:,}/{cc['compared']:,} dispatches"]),
    }
    return doc


def parse_args(argv: list[str] | None) -> BenchConfig:
    d = BenchConfig()
    p = argparse.ArgumentParser(
        prog="python -m loadtests.engine_bench",
        description="Engine micro-benchmark with no HTTP: the sans-IO core and the trio runtime "
                    "against a linear-scan baseline, in one run.",
    )
    p.add_argument("--operators", type=int, default=d.operators, help="waiting operators (core)")
    p.add_argument("--pools", type=int, default=d.pools)
    p.add_argument("--grades", type=int, default=d.grades)
    p.add_argument("--tasks", type=int, default=d.tasks, help="tasks added and resolved (core)")
    p.add_argument("--baseline-tasks", type=int, default=d.baseline_tasks,
                   help="tasks given to both the core and the linear scan (the scan is slow)")
    p.add_argument("--resort-tasks", type=int, default=d.resort_tasks,
                   help="of the baseline tasks, how many also time the original's re-sort")
    p.add_argument("--runtime-operators", type=int, default=d.runtime_operators,
                   help="streams for the trio Engine phase (0 skips it)")
    p.add_argument("--runtime-tasks", type=int, default=d.runtime_tasks)
    p.add_argument("--reject", type=float, default=d.reject, help="share of offers rejected")
    p.add_argument("--ignore", type=float, default=d.ignore,
                   help="share of offers left to expire")
    p.add_argument("--virtual-seconds", type=float, default=d.virtual_seconds,
                   help="virtual time the task flow spans (offers expire after 40 s of it)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--gc", choices=("off", "on", "both"), default=d.gc,
                   help="gc in the timed loops: off (collected before), on, or both (the core "
                        "phase once more with gc on; default)")
    p.add_argument("--out", type=Path, default=d.out, help="results folder")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke run (explicit size options still win)")
    a = p.parse_args(argv)
    cfg = BenchConfig(
        operators=a.operators, pools=a.pools, grades=a.grades, tasks=a.tasks,
        baseline_tasks=a.baseline_tasks, resort_tasks=a.resort_tasks,
        runtime_operators=a.runtime_operators, runtime_tasks=a.runtime_tasks,
        reject=a.reject, ignore=a.ignore, virtual_seconds=a.virtual_seconds, seed=a.seed,
        gc=a.gc, out=a.out, plot=not a.no_plot, quiet=a.quiet, quick=a.quick,
    )
    if a.quick:
        args = sys.argv[1:] if argv is None else argv
        given = {k for k in QUICK for arg in args
                 if arg.split("=", 1)[0] == f"--{k.replace('_', '-')}"}
        cfg = replace(cfg, **{k: v for k, v in QUICK.items() if k not in given})
    if min(cfg.operators, cfg.pools, cfg.grades, cfg.tasks, cfg.baseline_tasks) < 1:
        p.error("--operators, --pools, --grades, --tasks and --baseline-tasks must be >= 1")
    if not 0 <= cfg.reject + cfg.ignore < 1:
        p.error("--reject + --ignore must be in [0, 1)")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Run, print the report, write the results; 1 when a correctness check failed (a missed
    performance target is reported, not an error)."""
    cfg = parse_args(argv)
    doc = run(cfg)
    paths = write_results(doc, cfg.out, cfg.plot)
    print(text_report(doc))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0 if doc["verify"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
