"""Smoke run of the scale harness (loadtests.scale): a few hundred operators, seconds long.

It starts every server itself (QueueTasks and both baselines) on 127.0.0.1 port 0 with the harness's
own client processes, so the benchmark cannot rot. It fails when the harness or a server breaks:
streams not held, keep-alives or offers not delivered, a task lost or assigned twice, vanished
operators not leaving the queue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from loadtests import _report
from loadtests.scale import TARGETS, ScaleConfig, run_all

pytestmark = pytest.mark.e2e

OPERATORS = 200


def smoke_config(out_dir: Path) -> ScaleConfig:
    return ScaleConfig(
        operators=OPERATORS,
        duration=2.5,
        idle_window=0.6,
        settle=0.3,
        targets=TARGETS,
        workers=2,
        sources=2,
        keepalive_interval=0.25,
        offer_timeout=2.0,
        disconnect_grace=1.0,
        task_rate=150.0,
        vanish=100,
        probe_tasks=20,
        drain_timeout=20.0,
        behaviour={
            "accept": 0.6,
            "reject": 0.2,
            "ignore": 0.1,
            "vanish": 0.1,
            "think_mean": 0.05,
            "think_max": 0.2,
            "vanish_for": [0.1, 0.4],
        },
        out_dir=out_dir,
        quiet=True,
    )


def check_common(name: str, r: dict[str, Any]) -> None:
    assert "skipped" not in r, f"{name} skipped: {r.get('skipped')}"
    ramp = r["ramp"]
    assert ramp["connected"] == OPERATORS, ramp
    assert ramp["failed"] == 0, ramp
    assert ramp["held_after_settle"] == OPERATORS, ramp
    assert ramp["rss_per_conn"] is not None
    assert r["idle"]["keepalives"] > 0, r["idle"]
    assert r["load"]["sent"] > 0
    assert r["load"]["accepted_by_server"] == r["load"]["sent"], r["load"]
    ttf = r["time_to_offer"]
    assert ttf["n"] > 0, ttf
    assert ttf["p50_ms"] is not None, ttf
    vanish = r["vanish"]
    assert vanish["vanished"] == 100, vanish
    assert vanish["left_queue_s"] is not None, vanish


async def test_scale_harness_smoke(tmp_path: Path) -> None:
    with trio.fail_after(110):
        doc = await run_all(smoke_config(tmp_path))
    results = doc["targets"]
    assert set(results) == set(TARGETS)
    for name, r in results.items():
        check_common(name, r)
        if name != "queuetasks":
            # A push goes to a connected operator id in round-robin: all of them are delivered.
            assert r["time_to_offer"]["n"] == r["load"]["sent"], (name, r["time_to_offer"])
            assert r["operators_reached"] == OPERATORS
            assert r["client"]["errors"] == {}, r["client"]["errors"]

    qt = results["queuetasks"]
    integrity = qt["integrity"]
    assert integrity["ok"], integrity
    assert integrity["lost"] == 0, integrity
    assert integrity["assigned_twice"] == 0, integrity
    assert integrity["states"].get("assigned") == integrity["tasks"], integrity
    assert integrity["never_offered"] == 0, integrity
    counts = qt["client"]["counts"]
    assert counts.get("assign:200", 0) == integrity["tasks"], counts
    assert counts.get("reject:200", 0) > 0, counts
    assert qt["client"]["offer_ended"].get("assigned", 0) > 0, qt["client"]
    # Offers held by vanished operators go back to the queue once the disconnect grace is over.
    vanish = qt["vanish"]
    assert vanish["held_offers"] == vanish["probe_tasks"] > 0, vanish
    assert vanish["offers_back_s"] is not None, vanish
    assert vanish["offers_back_s"] >= 0.9 * vanish["disconnect_grace"], vanish

    paths = _report.write_all(doc, tmp_path, plots=False)
    md = paths[1].read_text()
    assert "queuetasks / bare-hypercorn" in md
    assert "time-to-offer p99" in md
