"""One command for the Locust workload at scale: start a QueueTasks server, run Locust headless
against it, and report what the server and Locust saw.

    python -m loadtests.locust_run --users 19000 --time 5m

It starts ``queuetasks serve`` on a free loopback port (JWT secret, stream cap above the users),
runs ``locust -f loadtests/locustfile.py --headless --processes N`` with the operators spread over
loopback source addresses (127.0.0.2 ...), samples the server's own counts every few seconds
(waiting operators, open streams, offers by outcome, descriptors), and writes
``loadtests/results/locust-<stamp>.json`` and ``.md`` (and ``locust-latest.*``) next to Locust's
own CSV files. Progress goes to stderr while it runs.

The file-descriptor limit here is 20,000 per process: one server process holds at most about
19,900 streams, so ``--users`` beyond that cannot all wait at once on one server; the report
prints the limit the server met.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from loadtests._procs import REPO, start_server
from loadtests.tokens import BASE_PATH, producer_token

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "loadtest-secret-0123456789abcdef0123456789"
Json = dict[str, Any]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.locust_run",
                                description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=19_000, help="operator users")
    p.add_argument("--producers", type=int, default=5, help="producer users")
    p.add_argument("--task-rate", type=float, default=20.0, help="tasks/s per producer")
    p.add_argument("--spawn-rate", type=float, default=200.0, help="new users per second")
    p.add_argument("--time", default="5m", help="Locust --run-time (after which users stop)")
    p.add_argument("--processes", type=int, default=4, help="Locust worker processes")
    p.add_argument("--sources", type=int, default=4, help="loopback source addresses")
    p.add_argument("--mix", default="accept=0.6,reject=0.2,ignore=0.05,close=0.1,tab=0.05")
    p.add_argument("--think", default="exp:2")
    p.add_argument("--offer-timeout", type=float, default=40.0)
    p.add_argument("--keepalive-interval", type=float, default=25.0)
    p.add_argument("--disconnect-grace", type=float, default=10.0)
    p.add_argument("--sample-interval", type=float, default=5.0,
                   help="seconds between samples of the server's counts")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    return p.parse_args(argv)


async def sample(url: str, samples: list[Json], server: Any, stop: trio.Event,
                 interval: float) -> None:
    headers = {"Authorization": f"Bearer {producer_token(SECRET)}"}
    start = time.monotonic()
    async with httpx.AsyncClient(timeout=10.0) as client:
        while not stop.is_set():
            row: Json = {"t": round(time.monotonic() - start, 1)}
            try:
                resp = await client.get(f"{url}{BASE_PATH}/stats", headers=headers)
                row.update(resp.json()["result"])
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                row["error"] = type(exc).__name__
            row["rss"] = server.rss()
            row["fds"] = server.num_fds()
            samples.append(row)
            print(f"[locust-run] t={row['t']:6.1f}s waiting={row.get('waiting_operators')} "
                  f"streams={row.get('open_streams')} offered={row.get('total_offered')} "
                  f"assigned={row.get('total_assigned')} fds={row['fds']}",
                  file=sys.stderr, flush=True)
            with trio.move_on_after(interval):
                await stop.wait()


def read_stats(prefix: Path) -> list[Json]:
    path = prefix.with_name(prefix.name + "_stats.csv")
    if not path.exists():
        return []
    return list(csv.DictReader(path.read_text().splitlines()))


async def run(a: argparse.Namespace) -> Json:
    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    server_cmd = [
        sys.executable, "-m", "queuetasks.web", "serve", "--host", "127.0.0.1", "--port", "0",
        "--secret", SECRET, "--max-streams", str(a.users + 500),
        "--offer-timeout", str(a.offer_timeout), "--keepalive-interval",
        str(a.keepalive_interval), "--disconnect-grace", str(a.disconnect_grace),
    ]
    csv_prefix = out / f"locust-{stamp}"
    sources = ",".join(f"127.0.0.{2 + i}" for i in range(a.sources))
    samples: list[Json] = []
    async with start_server(server_cmd, out / "server-locust.log") as server:
        locust_cmd = [
            str(Path(sys.executable).parent / "locust"),
            "-f", str(REPO / "loadtests/locustfile.py"),
            "--headless", "--host", server.url, "--processes", str(a.processes),
            "-u", str(a.users + a.producers), "-r", str(a.spawn_rate), "-t", a.time,
            "--stop-timeout", "5", "--qt-secret", SECRET, "--qt-sources", sources,
            "--qt-producers", str(a.producers), "--qt-task-rate", str(a.task_rate),
            "--qt-mix", a.mix, "--qt-think", a.think, "--csv", str(csv_prefix),
            "--only-summary",
        ]
        print(f"[locust-run] server {server.url}; {' '.join(locust_cmd)}", file=sys.stderr)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample, server.url, samples, server, stop, a.sample_interval)
            started = time.monotonic()
            done = await trio.run_process(locust_cmd, cwd=REPO, capture_stdout=True,
                                          capture_stderr=True, check=False)
            elapsed = time.monotonic() - started
            stop.set()
        fd_limit = server.fd_limit()
    stdout = done.stdout.decode(errors="replace")
    stderr = done.stderr.decode(errors="replace")
    (out / f"locust-{stamp}.log").write_text(stderr + "\n" + stdout)
    peak_line = next((line for line in stdout.splitlines() if "peak concurrent" in line), "")
    rows = read_stats(csv_prefix)
    by_name = {(r["Type"], r["Name"]): r for r in rows}
    waiting = [s.get("waiting_operators") or 0 for s in samples]
    streams = [s.get("open_streams") or 0 for s in samples]

    def metric(kind: str, name: str) -> Json | None:
        row = by_name.get((kind, name))
        if row is None:
            return None
        return {"count": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "p50_ms": float(row["50%"]), "p99_ms": float(row["99%"]),
                "max_ms": float(row["Max Response Time"])}

    doc: Json = {
        "stamp": stamp, "args": {k: str(v) for k, v in vars(a).items()},
        "locust_exit": done.returncode, "elapsed_s": round(elapsed, 1),
        "locust_peak_line": peak_line.strip(),
        "server_peak_waiting": max(waiting, default=0),
        "server_peak_streams": max(streams, default=0),
        "server_fd_limit": fd_limit,
        "time_to_offer": metric("METRIC", "time-to-offer"),
        "time_to_assign": metric("METRIC", "time-to-assign"),
        "sse_connect": metric("SSE", "connect"),
        "outcomes": {name: int(r["Request Count"]) for (kind, name), r in by_name.items()
                     if kind == "OFFER"},
        "failures": {f"{kind} {name}": int(r["Failure Count"])
                     for (kind, name), r in by_name.items() if int(r["Failure Count"])},
        "server_samples": samples,
    }
    return doc


def markdown(doc: Json) -> str:
    def ms(m: Json | None, key: str) -> str:
        return "-" if m is None else f"{m[key]:,.0f}"

    ttf, tta = doc["time_to_offer"], doc["time_to_assign"]
    lines = [
        f"Locust run {doc['stamp']}: {doc['args']['users']} operator users, "
        f"{doc['args']['producers']} producers x {doc['args']['task_rate']} tasks/s, "
        f"{doc['args']['processes']} Locust processes, {doc['elapsed_s']} s.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| peak concurrent waiting operators (server's count) | "
        f"{doc['server_peak_waiting']:,} |",
        f"| peak open streams (server's count) | {doc['server_peak_streams']:,} |",
        f"| server descriptor limit | {doc['server_fd_limit']:,} |",
        f"| Locust's own peak | {doc['locust_peak_line'] or '-'} |",
        f"| time-to-offer p50 / p99 / max (ms) | {ms(ttf, 'p50_ms')} / {ms(ttf, 'p99_ms')} / "
        f"{ms(ttf, 'max_ms')} |",
        f"| time-to-assign p50 / p99 (ms) | {ms(tta, 'p50_ms')} / {ms(tta, 'p99_ms')} |",
        f"| offers by outcome | {doc['outcomes']} |",
        f"| failures | {doc['failures'] or 'none'} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    doc = trio.run(run, a)
    out = a.out_dir
    for name in (f"locust-{doc['stamp']}", "locust-latest"):
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1))
        (out / f"{name}.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
