"""Smoke run of the Locust workload (loadtests/locustfile.py): a few dozen operators and a producer,
headless, seconds long, against a real server on 127.0.0.1 port 0, so that the workload cannot rot.

It fails when the workload or the server breaks: operators that never connect, offers never read,
assignments never made, or any failure Locust counts besides the ones the behaviour mix provokes.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import trio
from queuetasks.web import WebConfig

from .conftest import SECRET

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
USERS = 30


async def test_locust_workload_smoke(start_server, tmp_path: Path) -> None:
    if shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("locust is not installed in this environment")
    config = WebConfig(jwt_secret=SECRET, offer_timeout=2.0, keepalive_interval=0.5,
                       disconnect_grace=0.5)
    async with start_server(config) as server:
        cmd = [
            str(Path(sys.executable).parent / "locust"),
            "-f", str(ROOT / "loadtests/locustfile.py"),
            "--headless", "--host", server.url, "-u", str(USERS + 1), "-r", "100", "-t", "6s",
            "--stop-timeout", "3", "--qt-secret", SECRET, "--qt-think", "const:0.05",
            "--qt-task-rate", "40", "--qt-close-for", "0.3",
            "--csv", str(tmp_path / "locust"), "--only-summary", "--loglevel", "WARNING",
        ]
        with trio.fail_after(60):
            done = await trio.run_process(cmd, cwd=ROOT, capture_stdout=True,
                                          capture_stderr=True, check=False)
        stats = server.engine.statistics()
    log = done.stderr.decode(errors="replace")[-4000:]
    # Exit code 1 means "some request failed"; the failures are checked one by one below.
    assert done.returncode in (0, 1), log

    stats_csv = (tmp_path / "locust_stats.csv").read_text().splitlines()
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(stats_csv)}

    def count(kind: str, name: str) -> int:
        row = rows.get((kind, name))
        return int(row["Request Count"]) if row else 0

    assert count("SSE", "connect") >= USERS, (rows.keys(), log)
    assert count("POST", "tasks") > 0, log
    assert count("METRIC", "time-to-offer") > 0, log
    assert count("OFFER", "assigned") > 0, log
    assert stats["total_assigned"] > 0, stats
    failures = list(csv.DictReader((tmp_path / "locust_failures.csv").read_text().splitlines()))
    # A stream cut when Locust stops its users is the only failure the run may show.
    unexpected = [r for r in failures if (r["Method"], r["Name"]) != ("SSE", "read")]
    assert not unexpected, unexpected
