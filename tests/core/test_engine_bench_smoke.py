"""Smoke run of the engine micro-benchmark (loadtests.engine_bench) at tiny sizes, in process.

It asserts correctness facts only, never timings: every task of every phase assigned exactly once
and none lost, the result JSON written with its keys, and the pool/grade index choosing the same
operator as a linear scan of the queue in FIFO order on the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from queuetasks.engine import Operator, OperatorId

from loadtests import engine_bench as eb

TINY = ["--operators", "500", "--tasks", "1000", "--baseline-tasks", "300", "--resort-tasks", "20",
        "--runtime-operators", "300", "--runtime-tasks", "500", "--gc", "off", "--no-plot",
        "--quiet"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("engine-bench")
    return eb.main([*TINY, "--out", str(out)]), out


def test_main_exits_zero_and_writes_json(result: tuple[int, Path]) -> None:
    code, out = result
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert "engine-bench-latest.json" in names
    assert any(n.startswith("engine-bench-2") and n.endswith(".json") for n in names)
    doc = json.loads((out / "engine-bench-latest.json").read_text())
    assert {"config", "environment", "core", "baseline", "runtime", "targets", "verify"} <= set(doc)
    assert {"memory", "calls", "all_event_calls", "dispatch_cdf_us", "events_per_s_wall",
            "verify"} <= set(doc["core"])
    assert {"dispatch", "assign", "confirm", "reject", "rewait"} <= set(doc["core"]["calls"])
    assert {"linear_scan_dispatch", "core_dispatch", "speedup_p50", "speedup_mean",
            "crosscheck", "scan_depth"} <= set(doc["baseline"])
    assert {t["key"] for t in doc["targets"]} >= {"dispatch_p99_us", "events_per_s",
                                                  "bytes_per_operator", "speedup_p50"}
    assert all(isinstance(t["pass"], bool) for t in doc["targets"])
    assert not any(k.endswith("_ns") for k in doc["core"])  # raw samples stay out of the JSON


def test_every_task_resolved_none_lost(result: tuple[int, Path]) -> None:
    doc = json.loads((result[1] / "engine-bench-latest.json").read_text())
    assert doc["verify"]["ok"]
    for phase, tasks in (("core", 1000), ("runtime", 500)):
        v = doc[phase]["verify"]
        assert v["ok"], v
        assert v["tasks"] == tasks
        assert v["assigned_once"] == tasks
        assert v["lost"] == 0
        assert v["errors"] == []
        assert v["pending_after_drain"] == 0
        assert v["open_offers_after_drain"] == 0
    core = doc["core"]
    assert core["verify"]["live_tasks_after_drain"] == 0
    assert core["verify"]["waiting_after_drain"] == 500
    assert core["verify"]["offered_total"] == core["verify"]["ends_total"]
    # The workload did exercise every way an offer ends, not only assign.
    assert core["counts"]["rejected"] > 0
    assert core["counts"]["expired"] > 0
    assert core["counts"]["assigned"] <= 1000
    assert doc["runtime"]["counts"]["rejected"] > 0
    assert core["memory"]["waiting_operators"] == 500


def test_index_chose_what_a_linear_scan_chooses(result: tuple[int, Path]) -> None:
    base = json.loads((result[1] / "engine-bench-latest.json").read_text())["baseline"]
    cc = base["crosscheck"]
    assert cc["compared"] >= 300  # every task, plus a re-dispatch per reject
    assert cc["mismatches"] == 0, cc["examples"]
    assert base["resort_mismatches"] == 0
    assert base["waiting"] == 500


def test_lockstep_from_a_fresh_queue_matches() -> None:
    """A second deterministic sequence, from a fresh queue rather than the main loop's end."""
    cfg = eb.BenchConfig(operators=200, pools=4, grades=3, tasks=100, baseline_tasks=400,
                         resort_tasks=50, reject=0.3, seed=7, quiet=True)
    drv = eb.CoreDriver(cfg)
    drv.operators = {op.id: op for op in eb.make_operators(cfg, cfg.operators)}
    for op_id in drv.operators:
        drv.open_tab(op_id, kind=None)
    res = eb.run_lockstep(drv, cfg, eb.Progress(True), gc_enabled=True)
    assert res["crosscheck"]["compared"] > 400
    assert res["crosscheck"]["mismatches"] == 0, res["crosscheck"]["examples"]
    assert res["resort_mismatches"] == 0
    assert drv.errors == []
    assert len(drv.assigned) == 400


def test_linear_scan_takes_the_first_eligible_in_fifo_order() -> None:
    ops = [Operator(OperatorId(f"o{i}"), i % 3, frozenset({"a", "b"} if i % 2 else {"a"}))
           for i in range(12)]
    q = eb.LinearScanQueue(ops)
    assert q.dispatch("b", 2) is ops[5]
    assert q.dispatch("b", 2) is ops[11]
    assert q.dispatch("b", 2) is None
    assert q.dispatch("a", 0, {OperatorId("o0")}) is ops[1]
    q.add(ops[5])
    assert q.pick_resorting("b", 2) is ops[5]
    assert q.dispatch("b", 2) is ops[5]
    assert len(q) == 9


def test_workload_is_deterministic() -> None:
    cfg = eb.BenchConfig(seed=3)
    a, b = eb.Workload(cfg), eb.Workload(cfg)
    assert [a.task() for _ in range(50)] == [b.task() for _ in range(50)]
    assert [a.answer() for _ in range(50)] == [b.answer() for _ in range(50)]
    ops1 = eb.make_operators(cfg, 100)
    assert ops1 == eb.make_operators(cfg, 100)
    assert [op.grade for op in ops1[:6]] == [0, 1, 2, 3, 4, 0]
    assert all(1 <= len(op.pools) <= 3 for op in ops1)
