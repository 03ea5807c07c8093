"""Smoke run of the Locust workload (loadtests/locustfile.py) through its one-command runner
(loadtests/locust_run.py): a few dozen operators and a producer, headless, seconds long, against a
real ``queuetasks serve`` on 127.0.0.1 port 0, so that neither can rot.

It fails when the workload, the runner or the server breaks: operators that never connect or
wait, offers never read, assignments never made, or any failure Locust counts besides a stream cut
when Locust stops its users.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import trio

from loadtests import locust_run

pytestmark = pytest.mark.e2e

USERS = 30


async def test_locust_workload_smoke(tmp_path: Path) -> None:
    if shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("locust is not installed in this environment")
    args = locust_run.parse_args([
        "--users", str(USERS), "--producers", "1", "--task-rate", "40", "--spawn-rate", "100",
        "--time", "6s", "--processes", "1", "--sources", "1", "--think", "const:0.05",
        "--offer-timeout", "2", "--keepalive-interval", "0.5", "--disconnect-grace", "0.5",
        "--sample-interval", "0.5", "--out-dir", str(tmp_path),
    ])
    with trio.fail_after(90):
        doc = await locust_run.run(args)
    assert doc["locust_exit"] in (0, 1), doc  # 1: some request failed, checked below
    assert doc["server_peak_waiting"] > 0, doc["server_samples"]
    assert doc["sse_connect"] is not None, doc
    assert doc["sse_connect"]["count"] >= USERS, doc["sse_connect"]
    assert doc["time_to_offer"] is not None, doc
    assert doc["time_to_offer"]["count"] > 0, doc["time_to_offer"]
    assert doc["outcomes"].get("assigned", 0) > 0, doc["outcomes"]
    assert max(s.get("total_assigned", 0) for s in doc["server_samples"]) > 0
    unexpected = {k: v for k, v in doc["failures"].items() if k != "SSE read"}
    assert not unexpected, unexpected
    report = locust_run.markdown(doc)
    assert "peak concurrent waiting operators" in report
