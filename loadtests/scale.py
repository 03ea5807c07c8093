"""The scale harness: N SSE operators against QueueTasks and two baselines, in one run.

    python -m loadtests.scale --operators 19000 --duration 300

For each target (``queuetasks``, ``bare-hypercorn``, ``sse-starlette``) it starts the server on a
free
loopback port, spreads the operators over client processes and loopback source addresses
(127.0.0.2, 127.0.0.3, ...), and measures, in phases:

1. ramp: connection setup rate (bounded in-flight connects, optionally rate capped) and server RSS
   against connections held;
2. idle: server CPU over a window with keep-alives flowing;
3. load: a steady producer flow (``POST tasks``, or ``POST /push/{id}`` on a baseline) with
   operators that accept, reject, ignore or vanish; time-to-offer p50/p99/max; afterwards every task
   is checked from the producer side (``GET tasks/{id}``): none lost, none assigned twice;
4. vanish: many operators close at once; time until the server's queue (or connection count) drops.

Writes ``loadtests/results/scale-<stamp>.json``, ``.md`` and PNG plots (and ``latest.*`` copies).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from loadtests._http import HttpError, Pool
from loadtests._procs import Server, Worker, start_server, start_workers
from loadtests.tokens import BASE_PATH, producer_token

TARGETS = ("queuetasks", "bare-hypercorn", "sse-starlette")
RESULTS = Path(__file__).resolve().parent / "results"
Json = dict[str, Any]


@dataclass
class ScaleConfig:
    operators: int = 19_000
    duration: float = 300.0  # hold time after the ramp: idle window + load phase
    targets: tuple[str, ...] = TARGETS
    workers: int = 4
    sources: int = 4  # loopback source addresses 127.0.0.2 ... for the operator workers
    ramp_concurrency: int = 16  # connects in flight per worker
    ramp_rate: float = 0.0  # total new connections/s cap (0: bounded only by concurrency)
    keepalive_interval: float = 25.0
    offer_timeout: float = 40.0
    disconnect_grace: float = 10.0
    task_rate: float = 200.0
    idle_window: float = 0.0  # 0: min(60, duration / 4)
    vanish: int = 10_000  # capped at 90 % of the streams held
    probe_tasks: int = 200  # offers held by vanishing operators
    drain_timeout: float = 0.0  # 0: offer_timeout + disconnect_grace + 15
    settle: float = 3.0  # pause after the ramp before the "after" RSS
    behaviour: dict[str, Any] = field(default_factory=dict)
    reuse_connections: bool = True  # the next wait-sse on the last one's keep-alive connection
    secret: str = "loadtest-secret-0123456789abcdef0123456789"
    host: str = "127.0.0.1"
    queuetasks_cmd: str = ""  # override, with {host} {port} {secret} ... placeholders
    server_args: str = ""  # extra arguments for the queuetasks server
    out_dir: Path = RESULTS
    quiet: bool = False
    plots: bool = True


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    idx = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[idx]


def latency_summary(values: list[float]) -> Json:
    return {
        "n": len(values),
        "p50_ms": _ms(_pct(values, 50)),
        "p90_ms": _ms(_pct(values, 90)),
        "p99_ms": _ms(_pct(values, 99)),
        "max_ms": _ms(max(values) if values else None),
        "mean_ms": _ms(statistics.fmean(values) if values else None),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def server_command(target: str, cfg: ScaleConfig) -> list[str]:
    py = sys.executable
    if target == "queuetasks":
        extra = shlex.split(cfg.server_args)
        if "--max-streams" not in extra:
            # Hold exactly what the run needs, whatever the server derives from its fd limit.
            extra += ["--max-streams", str(max(cfg.operators + 500, 1000))]
        if cfg.queuetasks_cmd:
            return shlex.split(
                cfg.queuetasks_cmd.format(
                    python=py,
                    host=cfg.host,
                    secret=cfg.secret,
                    offer_timeout=cfg.offer_timeout,
                    keepalive_interval=cfg.keepalive_interval,
                    disconnect_grace=cfg.disconnect_grace,
                )
            )
        return [
            py,
            "-m",
            "queuetasks.web",
            "serve",
            "--host",
            cfg.host,
            "--port",
            "0",
            "--secret",
            cfg.secret,
            "--offer-timeout",
            str(cfg.offer_timeout),
            "--keepalive-interval",
            str(cfg.keepalive_interval),
            "--disconnect-grace",
            str(cfg.disconnect_grace),
            *extra,
        ]
    return [
        py,
        "-m",
        "loadtests.baselines",
        target,
        "--host",
        cfg.host,
        "--port",
        "0",
        "--keepalive-interval",
        str(cfg.keepalive_interval),
    ]


def find_count(obj: Any, keys: tuple[str, ...]) -> int | None:
    """First integer under one of ``keys`` (case- and separator-insensitive), searched 2 deep."""
    wanted = {k.lower().replace("_", "") for k in keys}
    stack = [(obj, 0)]
    while stack:
        cur, depth = stack.pop(0)
        if isinstance(cur, dict):
            for k, v in cur.items():
                if k.lower().replace("_", "") in wanted and isinstance(v, int):
                    return v
            if depth < 2:
                stack.extend((v, depth + 1) for v in cur.values())
    return None


WAITING_KEYS = (
    "waitingOperators",
    "operatorsWaiting",
    "waiting",
    "queueLength",
    "queued",
    "queue_size",
    "connections",
)


class Probe:
    """Asks the server how many operators wait (queuetasks) or streams are open (baselines)."""

    def __init__(self, server: Server, target: str, secret: str) -> None:
        self.pool = Pool(server.host, server.port)
        self.target = target
        self.headers = {"Authorization": f"Bearer {producer_token(secret)}"}
        self.mode = "stats"

    async def waiting(self) -> int | None:
        try:
            if self.target != "queuetasks":
                _, body = await self.pool.request("GET", "/stats")
                return find_count(json.loads(body), ("connections",))
            if self.mode == "stats":
                status, body = await self.pool.request("GET", f"{BASE_PATH}/stats", self.headers)
                count = find_count(json.loads(body), WAITING_KEYS) if status == 200 else None
                if count is not None:
                    return count
                self.mode = "queue"
            status, body = await self.pool.request(
                "GET", f"{BASE_PATH}/queue-operators", self.headers
            )
            result = json.loads(body).get("result") if status == 200 else None
            return len(result) if isinstance(result, list) else None
        except (OSError, HttpError, ValueError):
            return None

    async def raw_stats(self) -> Any:
        path = "/stats" if self.target != "queuetasks" else f"{BASE_PATH}/stats"
        try:
            _, body = await self.pool.request("GET", path, self.headers)
            return json.loads(body).get("result")
        except (OSError, HttpError, ValueError) as exc:
            return f"error: {exc!r}"

    def close(self) -> None:
        self.pool.close()


class Run:
    """One target's measurement, phase by phase."""

    def __init__(
        self,
        target: str,
        cfg: ScaleConfig,
        server: Server,
        ops: list[Worker],
        producer: Worker,
        log: Callable[[str], None],
    ) -> None:
        self.target = target
        self.cfg = cfg
        self.server = server
        self.ops = ops
        self.producer = producer
        self.log = log
        self.kind = "queuetasks" if target == "queuetasks" else "baseline"
        self.samples: list[Json] = []  # time series: t, phase, connected, rss, cpu, fds
        self.result: Json = {"target": target, "server_cmd": server_command(target, cfg)}
        self.phase = "start"
        self.t0 = time.monotonic()
        self.progress: list[Json] = [{} for _ in ops]

    def total(self, key: str) -> int:
        return sum(int(p.get(key, 0)) for p in self.progress)

    async def sampler(self) -> None:
        """Every 0.25 s: worker progress, server RSS/CPU/fds; a progress line every 5 s."""
        last_print = 0.0
        while True:
            for i, w in enumerate(self.ops):
                with contextlib.suppress(RuntimeError, trio.TooSlowError, trio.BrokenResourceError):
                    self.progress[i] = await w.call("progress", wait_limit=30)
            now = time.monotonic()
            try:
                rss, cpu, fds = self.server.rss(), self.server.cpu_seconds(), self.server.num_fds()
            except Exception:  # the server died: psutil raises NoSuchProcess
                rss, cpu, fds = 0, 0.0, 0
            self.samples.append(
                {
                    "t": round(now - self.t0, 3),
                    "phase": self.phase,
                    "connected": self.total("live"),
                    "rss": rss,
                    "cpu": cpu,
                    "fds": fds,
                    "offers": self.total("offers"),
                }
            )
            if now - last_print >= 5:
                last_print = now
                self.log(
                    f"[{self.target}] {self.phase:<7} t={now - self.t0:6.1f}s "
                    f"streams={self.total('live'):>6} failed={self.total('failed')} "
                    f"offers={self.total('offers')} keepalives={self.total('keepalives')} "
                    f"errors={self.total('errors')} rss={rss / 2**20:.0f}MiB fds={fds}"
                )
            await trio.sleep(0.25)

    def cpu_window(self, t_from: float, t_to: float) -> float | None:
        rows = [s for s in self.samples if t_from <= s["t"] <= t_to and s["rss"]]
        if len(rows) < 2 or rows[-1]["t"] <= rows[0]["t"]:
            return None
        return 100 * (rows[-1]["cpu"] - rows[0]["cpu"]) / (rows[-1]["t"] - rows[0]["t"])

    async def ramp(self) -> None:
        cfg, n = self.cfg, self.cfg.operators
        self.phase = "ramp"
        await trio.sleep(min(1.0, cfg.settle))  # let the server settle before the "before" RSS
        rss0 = self.server.rss()
        shares = [n // len(self.ops) + (i < n % len(self.ops)) for i in range(len(self.ops))]
        t_start = time.monotonic()
        rate = cfg.ramp_rate / len(self.ops) if cfg.ramp_rate else 0.0
        for w, share in zip(self.ops, shares, strict=True):
            await w.cast("ramp", count=share, concurrency=cfg.ramp_concurrency, rate=rate)
        deadline = t_start + max(120.0, n / 50)
        while time.monotonic() < deadline:
            await trio.sleep(0.25)
            if self.total("connected") + self.total("failed") >= n:
                break
        t_ramp = time.monotonic() - t_start
        connected = self.total("connected")
        self.phase = "settle"
        await trio.sleep(cfg.settle)
        rss1 = self.server.rss()
        held = self.total("live")
        probe = Probe(self.server, self.target, cfg.secret)
        try:
            self.result["server_stats_after_ramp"] = await probe.raw_stats()
        finally:
            probe.close()
        self.result["ramp"] = {
            "requested": n,
            "connected": connected,
            "failed": self.total("failed"),
            "seconds": round(t_ramp, 3),
            "rate_per_s": round(connected / t_ramp, 1),
            "rss_before": rss0,
            "rss_after": rss1,
            "held_after_settle": held,
            "rss_per_conn": round((rss1 - rss0) / held) if held else None,
            "server_fds": self.server.num_fds(),
            "server_fd_limit": self.server.fd_limit(),
        }
        self.log(
            f"[{self.target}] ramp: {connected}/{n} in {t_ramp:.1f}s "
            f"({connected / t_ramp:.0f}/s), "
            f"{(rss1 - rss0) / max(held, 1) / 1024:.1f} KiB/conn"
        )

    async def idle(self, window: float) -> None:
        self.phase = "idle"
        ka0, t_from = self.total("keepalives"), time.monotonic() - self.t0
        cpu0, w0 = self.server.cpu_seconds(), time.monotonic()
        await trio.sleep(window)
        cpu1, w1 = self.server.cpu_seconds(), time.monotonic()
        held = self.total("live")
        self.result["idle"] = {
            "window_s": round(w1 - w0, 2),
            "held": held,
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 2),
            "keepalives": self.total("keepalives") - ka0,
            "keepalives_expected": round(held * (w1 - w0) / self.cfg.keepalive_interval),
            "t_from": round(t_from, 2),
            "rss": self.server.rss(),
        }
        self.log(
            f"[{self.target}] idle: {self.result['idle']['server_cpu_pct']}% CPU "
            f"over {w1 - w0:.0f}s with {held} streams"
        )

    async def load(self, seconds: float) -> list[list[Any]]:
        cfg = self.cfg
        self.phase = "load"
        t_from = time.monotonic() - self.t0
        push_to = None
        if self.kind == "baseline":
            push_to = [
                f"w{i}-{j}"
                for i, p in enumerate(self.progress)
                for j in range(int(p.get("connected", 0)))
            ]
        cpu0, w0 = self.server.cpu_seconds(), time.monotonic()
        reply = await self.producer.call(
            "produce",
            wait_limit=seconds * 3 + 120,
            rate=cfg.task_rate,
            duration=seconds,
            prefix="t",
            push_to=push_to,
        )
        cpu1, w1 = self.server.cpu_seconds(), time.monotonic()
        tasks: list[list[Any]] = reply["tasks"]
        ok = 200 if push_to is not None else 201
        self.result["load"] = {
            "seconds": round(w1 - w0, 2),
            "t_from": round(t_from, 2),
            "sent": len(tasks),
            "accepted_by_server": sum(1 for t in tasks if t[2] == ok),
            "producer_errors": reply["errors"],
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / (w1 - w0), 2),
            "rate_per_s": round(len(tasks) / (w1 - w0), 1),
        }
        self.log(
            f"[{self.target}] load: {len(tasks)} tasks in {w1 - w0:.1f}s, "
            f"server CPU {self.result['load']['server_cpu_pct']}%"
        )
        return tasks

    async def drain_and_verify(self, tasks: list[list[Any]]) -> Json:
        """Wait until every added task is assigned (or the drain timeout), then check all."""
        self.phase = "drain"
        cfg = self.cfg
        ids = [t[0] for t in tasks if t[2] == 201]
        timeout = cfg.drain_timeout or cfg.offer_timeout + cfg.disconnect_grace + 15
        deadline = time.monotonic() + timeout
        states: dict[str, list[Any]] = {}
        todo = ids
        while True:
            reply = await self.producer.call("verify", ids=todo, wait_limit=1200)
            states.update(reply["states"])
            todo = [i for i in todo if states[i][0] != "assigned"]
            if not todo or time.monotonic() >= deadline:
                break
            await trio.sleep(2.0)
        return states

    async def vanish(self) -> None:
        cfg = self.cfg
        self.phase = "vanish"
        held = self.total("live")
        count = min(cfg.vanish, held - max(1, held // 10))
        probe_ids: list[str] = []
        if self.kind == "queuetasks" and cfg.probe_tasks:
            for w in self.ops:
                await w.call("hold", on=True)
            probe_ids = [f"probe{i}" for i in range(min(cfg.probe_tasks, count))]
            await self.producer.call("add", ids=probe_ids, wait_limit=120)
            with trio.move_on_after(10):
                while self.total("open_offers") < len(probe_ids):  # noqa: ASYNC110
                    await trio.sleep(0.1)
        probe = Probe(self.server, self.target, cfg.secret)
        try:
            before = await probe.waiting()
            offers_before = self.total("offers")
            shares = [count * int(p.get("live", 0)) // max(held, 1) for p in self.progress]
            shares[0] += count - sum(shares)
            t0 = time.monotonic()
            replies = []
            async with trio.open_nursery() as nursery:

                async def one(w: Worker, k: int) -> None:
                    replies.append(await w.call("vanish", count=k, offers_first=True))

                for w, k in zip(self.ops, shares, strict=True):
                    nursery.start_soon(one, w, k)
            t_closed = time.monotonic() - t0
            for w in self.ops:
                if self.kind == "queuetasks":
                    await w.call("hold", on=False)
            vanished = sum(r["n"] for r in replies)
            held_offers = [t for r in replies for t in r["tasks"]]
            target_count = None if before is None else before - (vanished - len(held_offers))
            left_s = None
            polls: list[tuple[float, int | None]] = []
            deadline = t0 + 30
            while target_count is not None and time.monotonic() < deadline:
                cur = await probe.waiting()
                polls.append((round(time.monotonic() - t0, 4), cur))
                if cur is not None and cur <= target_count:
                    left_s = time.monotonic() - t0
                    break
                await trio.sleep(0.02)
            reoffer_s = None
            if held_offers:
                limit = t0 + cfg.disconnect_grace + 20
                while time.monotonic() < limit:
                    if self.total("offers") - offers_before >= len(held_offers):
                        reoffer_s = time.monotonic() - t0
                        break
                    await trio.sleep(0.05)
            after = await probe.waiting()
        finally:
            probe.close()
        self.result["vanish"] = {
            "requested": count,
            "vanished": vanished,
            "closed_in_s": round(t_closed, 4),
            "queue_before": before,
            "queue_after": after,
            "queue_target": target_count,
            "left_queue_s": None if left_s is None else round(left_s, 4),
            "held_offers": len(held_offers),
            "probe_tasks": len(probe_ids),
            "offers_back_s": None if reoffer_s is None else round(reoffer_s, 3),
            "disconnect_grace": cfg.disconnect_grace,
            "polls": polls[-20:],
        }
        self.log(
            f"[{self.target}] vanish: {vanished} closed; queue {before} -> {after}, "
            f"left in {left_s}s; {len(held_offers)} held offers back in {reoffer_s}s"
        )

    async def collect(self, tasks: list[list[Any]], states: dict[str, list[Any]] | None) -> None:
        reports = [await w.call("report", wait_limit=120) for w in self.ops]
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        ended: Counter[str] = Counter()
        for r in reports:
            counts.update(r["counts"])
            errors.update(r["errors"])
            ended.update(r["ended"])
        load_from = self.result.get("load", {}).get("t_from", 0.0) + self.t0
        sent_at = {t[0]: t[1] for t in tasks}
        first: dict[str, tuple[float, float]] = {}  # task -> (latency, read_at)
        reached: set[str] = set()
        for r in reports:
            for task_id, op_id, read_at, latency, _first in r["offers"]:
                if task_id not in sent_at or latency is None:
                    continue
                reached.add(op_id)
                if task_id not in first or latency < first[task_id][0]:
                    first[task_id] = (latency, read_at)
        latencies = [v[0] for v in first.values()]
        self.result["time_to_offer"] = latency_summary(latencies)
        self.result["latency_series"] = sorted(
            (round(read_at - load_from, 3), round(lat * 1000, 3)) for lat, read_at in first.values()
        )
        self.result["operators_reached"] = len(reached)
        self.result["client"] = {
            "counts": dict(counts),
            "errors": dict(errors),
            "offer_ended": dict(ended),
        }
        if self.kind == "queuetasks" and states is not None:
            assigned_ok: dict[str, list[str]] = {}
            for r in reports:
                for task_id, op_id, _ in r["assigned"]:
                    assigned_ok.setdefault(task_id, []).append(op_id)
            state_counts = Counter(s[0] for s in states.values())
            twice = [t for t, ops in assigned_ok.items() if len(ops) > 1]
            # Each with what the server says (state, operator) and who got 200 on assign.
            mismatch = [
                {"task": t, "server": states[t], "assign_200": ops}
                for t, ops in assigned_ok.items() if t in states and states[t][1] not in ops
            ]
            lost = [t for t, s in states.items() if s[0] not in ("assigned", "pending", "offered")]
            never_offered = [t for t in states if t not in first]
            self.result["integrity"] = {
                "tasks": len(states),
                "states": dict(state_counts),
                "lost": len(lost),
                "lost_examples": lost[:10],
                "assigned_twice": len(twice),
                "twice_examples": twice[:10],
                "server_operator_mismatch": len(mismatch),
                "mismatch_examples": mismatch[:10],
                "never_offered": len(never_offered),
                "ok": not lost and not twice and not mismatch,
            }
            self.log(
                f"[{self.target}] integrity: {dict(state_counts)}; lost={len(lost)} "
                f"twice={len(twice)} mismatch={len(mismatch)}"
            )


async def run_target(target: str, cfg: ScaleConfig, log: Callable[[str], None]) -> Json:
    out = cfg.out_dir
    n_workers = max(cfg.workers, math.ceil(cfg.operators / 15_000))
    kind = "queuetasks" if target == "queuetasks" else "baseline"
    op_cfgs = [
        {
            "role": "operators",
            "kind": kind,
            "host": cfg.host,
            "port": 0,
            "secret": cfg.secret,
            "source": f"127.0.0.{2 + i % max(cfg.sources, 1)}" if cfg.sources else None,
            "prefix": f"w{i}-",
            "seed": i,
            "behaviour": cfg.behaviour,
            "reuse_connections": cfg.reuse_connections,
        }
        for i in range(n_workers)
    ]
    async with start_server(server_command(target, cfg), out / f"server-{target}.log") as server:
        for c in op_cfgs:
            c["port"] = server.port
        prod_cfg = {
            "role": "producer",
            "kind": kind,
            "host": cfg.host,
            "port": server.port,
            "secret": cfg.secret,
            "seed": 99,
        }
        log(
            f"[{target}] server pid {server.proc.pid} at {server.url}; {n_workers} client processes"
        )
        async with start_workers([*op_cfgs, prod_cfg], out) as workers:
            run = Run(target, cfg, server, workers[:-1], workers[-1], log)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run.sampler)
                window = cfg.idle_window or min(60.0, cfg.duration / 4)
                tasks: list[list[Any]] = []
                states: dict[str, list[Any]] | None = None

                async def load() -> None:
                    nonlocal tasks, states
                    tasks = await run.load(max(1.0, cfg.duration - window))
                    if kind == "queuetasks":
                        states = await run.drain_and_verify(tasks)

                # A phase that fails is reported and the run goes on: a figure is never lost
                # because a later phase broke.
                for name, phase in (
                    ("ramp", run.ramp),
                    ("idle", lambda: run.idle(window)),
                    ("load", load),
                    ("collect", lambda: run.collect(tasks, states)),
                    ("vanish", run.vanish),
                ):
                    try:
                        await phase()
                    except Exception as exc:
                        run.result.setdefault("phase_errors", {})[name] = repr(exc)
                        log(f"[{target}] phase {name} failed: {exc!r}")
                run.result["client_rss_total"] = sum(w.rss() for w in workers)
                nursery.cancel_scope.cancel()
            run.result["series"] = run.samples
            return run.result


def queuetasks_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("queuetasks.web.cli") is not None
    except ModuleNotFoundError:
        return False


async def run_all(cfg: ScaleConfig, log: Callable[[str], None] | None = None) -> Json:
    """Run every target in turn (blocks for minutes); returns the results document."""
    log = log or (lambda s: None if cfg.quiet else print(s, flush=True))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    doc: Json = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_cpus": _cpus(),
        "targets": {},
    }
    for target in cfg.targets:
        if target == "queuetasks" and not queuetasks_available() and not cfg.queuetasks_cmd:
            log("[queuetasks] queuetasks.web.cli is not importable: skipped")
            doc["targets"][target] = {"target": target, "skipped": "server not installed"}
            continue
        doc["targets"][target] = await run_target(target, cfg, log)
    return doc


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def parse_args(argv: list[str] | None = None) -> ScaleConfig:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.scale", description=__doc__.split("\n")[0]
    )
    d = ScaleConfig()
    p.add_argument("--operators", type=int, default=d.operators)
    p.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        help="seconds held after the ramp (idle window + load phase)",
    )
    p.add_argument("--targets", default=",".join(d.targets))
    p.add_argument("--workers", type=int, default=d.workers, help="client processes")
    p.add_argument("--sources", type=int, default=d.sources, help="loopback source addresses")
    p.add_argument("--ramp-concurrency", type=int, default=d.ramp_concurrency)
    p.add_argument("--ramp-rate", type=float, default=d.ramp_rate)
    p.add_argument("--keepalive-interval", type=float, default=d.keepalive_interval)
    p.add_argument("--offer-timeout", type=float, default=d.offer_timeout)
    p.add_argument("--disconnect-grace", type=float, default=d.disconnect_grace)
    p.add_argument("--task-rate", type=float, default=d.task_rate)
    p.add_argument("--idle-window", type=float, default=d.idle_window)
    p.add_argument("--vanish", type=int, default=d.vanish)
    p.add_argument("--probe-tasks", type=int, default=d.probe_tasks)
    p.add_argument(
        "--behaviour",
        default="{}",
        help='JSON, e.g. {"accept":0.7,"reject":0.15,"ignore":0.05,"vanish":0.1,"think_mean":0.3}',
    )
    p.add_argument("--queuetasks-cmd", default="")
    p.add_argument("--server-args", default="")
    p.add_argument("--out-dir", type=Path, default=d.out_dir)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-reuse", action="store_true",
                   help="open every wait-sse on a new connection (default: reuse the last "
                        "stream's keep-alive connection, as a browser does)")
    a = p.parse_args(argv)
    return ScaleConfig(
        operators=a.operators,
        duration=a.duration,
        targets=tuple(t.strip() for t in a.targets.split(",") if t.strip()),
        workers=a.workers,
        sources=a.sources,
        ramp_concurrency=a.ramp_concurrency,
        ramp_rate=a.ramp_rate,
        keepalive_interval=a.keepalive_interval,
        offer_timeout=a.offer_timeout,
        disconnect_grace=a.disconnect_grace,
        task_rate=a.task_rate,
        idle_window=a.idle_window,
        vanish=a.vanish,
        probe_tasks=a.probe_tasks,
        behaviour=json.loads(a.behaviour),
        queuetasks_cmd=a.queuetasks_cmd,
        server_args=a.server_args,
        out_dir=a.out_dir,
        plots=not a.no_plots,
        reuse_connections=not a.no_reuse,
    )


def main(argv: list[str] | None = None) -> None:
    from loadtests import _report

    cfg = parse_args(argv)
    for t in cfg.targets:
        if t not in TARGETS:
            raise SystemExit(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    doc = trio.run(run_all, cfg)
    paths = _report.write_all(doc, cfg.out_dir, plots=cfg.plots)
    print(_report.markdown(doc))
    print("wrote: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
