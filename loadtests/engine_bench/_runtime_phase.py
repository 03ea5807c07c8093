"""The runtime phase: the same workload through the trio ``Engine`` (``open_stream``,
``add_task``, ``TabStream.receive``, ``assign`` / ``reject``) under ``trio.run`` with a
``MockClock``."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections import deque
from collections.abc import Callable

import trio
import trio.testing
from queuetasks.engine import (
    EndedMessage,
    Engine,
    EngineConfig,
    EngineEvent,
    EventKind,
    OfferMessage,
    OperatorId,
    TabStream,
    TaskId,
)

from loadtests.engine_bench._measure import Json, Progress, gc_mode, perf_ns, summary_ns
from loadtests.engine_bench._workload import (
    ASSIGN,
    ENDS,
    REJECT,
    BenchConfig,
    Workload,
    make_operators,
)


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
