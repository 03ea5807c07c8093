"""Measuring helpers shared by the phases: percentiles, per-call summaries, progress on stderr
and the garbage collector's mode in the timed loops."""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Json = dict[str, Any]
perf_ns = time.perf_counter_ns


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
