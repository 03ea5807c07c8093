"""The core phases: ``CoreDriver`` plays the runtime's part for a bare ``Core``; ``run_core``
times every core call under the workload (and its memory per waiting operator), and
``run_lockstep`` gives the same tasks to the core and to ``LinearScanQueue``."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from typing import Any

from queuetasks.engine import (
    Core,
    CoreConfig,
    EventKind,
    Notify,
    Operator,
    OperatorId,
    OperatorStatus,
    TabId,
    TaskId,
    TaskSpec,
)

from loadtests.engine_bench._measure import Json, Progress, gc_mode, pct, perf_ns, summary_ns
from loadtests.engine_bench._workload import (
    ASSIGN,
    ENDS,
    REJECT,
    BenchConfig,
    LinearScanQueue,
    Workload,
    make_operators,
)


def _rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


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
