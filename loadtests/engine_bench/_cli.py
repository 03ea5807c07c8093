"""The whole run (every phase, the verdict) and the command line."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import trio

from loadtests.engine_bench._core_phase import run_core, run_lockstep
from loadtests.engine_bench._measure import Json, Progress
from loadtests.engine_bench._report import evaluate, text_report, write_results
from loadtests.engine_bench._runtime_phase import run_runtime
from loadtests.engine_bench._workload import QUICK, BenchConfig


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
