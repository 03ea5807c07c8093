"""Garbage-collector pacing for a server that holds tens of thousands of streams.

Why (measured, see the README's Performance section): CPython triggers a young collection when
allocations *minus deallocations* pass a threshold. A server whose long-lived stream objects are
replaced as fast as new ones appear (every keep-alive wait, every reconnect) keeps that count near
zero while the young generations grow to hundreds of thousands of objects: at 19,000 streams,
generation-0 and generation-1 collections held 0.3-1 million objects and stopped the whole server
for 0.5-1.6 s; a full collection there takes 2.2-2.3 s.

So, with ``gc_tuning`` on, the standalone server turns automatic collection off and runs it from a
trio task on a clock instead: generation 0 every ``young_interval`` (few objects each time),
generation 1 every ``middle_every`` ticks (objects older than a tick, once, before they settle in
generation 2), and a full collection every ``full_interval`` (cyclic garbage that got old, such as
a closed connection's objects, is freed then; the one long pause is paid that rarely). Start-up
objects are frozen first. Every collection, paced or automatic, is timed by ``GcPauses``.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger("queuetasks.web")

Observer = Callable[[int, float, int], None]


class GcPauses:
    """Times every collection through ``gc.callbacks`` and reports ``(generation, seconds,
    collected)`` to ``observer``. Use as a context manager; removal is idempotent."""

    def __init__(self, observer: Observer, *, warn_after: float = 0.25) -> None:
        self._observer = observer
        self._warn_after = warn_after
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation, collected = int(info["generation"]), int(info["collected"])
        if seconds >= self._warn_after:
            log.warning("gc: generation %d collection paused the server %.3f s (%d freed)",
                        generation, seconds, collected)
        try:
            self._observer(generation, seconds, collected)
        except Exception:  # a metrics failure must not break collection
            log.exception("gc pause observer failed")

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class GcPacer:
    """Runs the collector on a clock (see the module's docstring). ``run`` blocks until
    cancelled; on the way out automatic collection is as it was before."""

    def __init__(self, *, young_interval: float = 0.1, middle_every: int = 10,
                 full_interval: float = 600.0) -> None:
        if not young_interval > 0 or middle_every < 1 or not full_interval > 0:
            raise ValueError("young_interval and full_interval must be positive, "
                             "middle_every at least 1")
        self.young_interval = young_interval
        self.middle_every = middle_every
        self.full_interval = full_interval
        self.collections = [0, 0, 0]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            task_status.started()
            ticks = 0
            next_full = trio.current_time() + self.full_interval
            while True:
                await trio.sleep(self.young_interval)
                ticks += 1
                if trio.current_time() >= next_full:
                    generation = 2
                    next_full = trio.current_time() + self.full_interval
                elif ticks % self.middle_every == 0:
                    generation = 1
                else:
                    generation = 0
                gc.collect(generation)
                self.collections[generation] += 1
        finally:
            if was_enabled:
                gc.enable()
