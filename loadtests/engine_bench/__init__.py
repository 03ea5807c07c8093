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

Modules: ``_workload`` (configuration, operators, task flow, the ``LinearScanQueue`` baseline),
``_measure`` (percentiles, summaries, progress, gc mode), ``_core_phase`` (``CoreDriver``, the
core and lockstep phases), ``_runtime_phase`` (the trio ``Engine`` phase), ``_report`` (targets,
text report, plot, result files) and ``_cli`` (the whole run and the command line). Everything
importable from the former single module is re-exported here.
"""

from loadtests.engine_bench._cli import main, parse_args, run
from loadtests.engine_bench._core_phase import CoreDriver, measure_open, run_core, run_lockstep
from loadtests.engine_bench._measure import Json, Progress, gc_mode, pct, perf_ns, summary_ns
from loadtests.engine_bench._report import (
    CDF_QUANTILES,
    TARGETS,
    draw_plot,
    evaluate,
    for_json,
    text_report,
    write_results,
)
from loadtests.engine_bench._runtime_phase import run_runtime
from loadtests.engine_bench._workload import (
    ASSIGN,
    ENDS,
    IGNORE,
    QUICK,
    REJECT,
    RESULTS,
    BenchConfig,
    LinearScanQueue,
    Workload,
    make_operators,
    pool_names,
)

__all__ = [
    "ASSIGN",
    "CDF_QUANTILES",
    "ENDS",
    "IGNORE",
    "QUICK",
    "REJECT",
    "RESULTS",
    "TARGETS",
    "BenchConfig",
    "CoreDriver",
    "Json",
    "LinearScanQueue",
    "Progress",
    "Workload",
    "draw_plot",
    "evaluate",
    "for_json",
    "gc_mode",
    "main",
    "make_operators",
    "measure_open",
    "parse_args",
    "pct",
    "perf_ns",
    "pool_names",
    "run",
    "run_core",
    "run_lockstep",
    "run_runtime",
    "summary_ns",
    "text_report",
    "write_results",
]
