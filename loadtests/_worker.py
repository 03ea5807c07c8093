"""Client processes of the scale harness: SSE operators, or one producer.

Started by ``loadtests.scale`` as ``python -m loadtests._worker '<json config>'``; reads commands as
JSON lines on stdin and writes events as JSON lines on stdout (see ``OperatorWorker.handle`` and
``ProducerWorker.handle``). Times are ``time.monotonic()``, which is one system-wide clock on Linux,
so an offer's latency is "offer read here" minus "task sent by the producer process".
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from loadtests._http import Conn, HttpError, Pool, SseStream, open_sse
from loadtests.tokens import BASE_PATH, operator_token, producer_token

now = time.monotonic
Json = dict[str, Any]


@dataclass(slots=True)
class Behaviour:
    """What an operator does with an offer (probabilities are normalised)."""

    accept: float = 0.70
    reject: float = 0.15
    ignore: float = 0.05  # never answers: the offer expires
    vanish: float = 0.10  # closes the stream mid-offer, comes back after vanish_for
    think_mean: float = 0.3
    think_max: float = 3.0
    vanish_for: tuple[float, float] = (0.5, 3.0)

    def choose(self, rng: random.Random, allow_vanish: bool = True) -> str:
        names = ["accept", "reject", "ignore", "vanish"]
        weights = [self.accept, self.reject, self.ignore, self.vanish if allow_vanish else 0.0]
        return rng.choices(names, weights)[0]

    def think(self, rng: random.Random) -> float:
        if self.think_mean <= 0:
            return 0.0
        return min(rng.expovariate(1 / self.think_mean), self.think_max)


@dataclass(slots=True)
class Config:
    role: str  # "operators" | "producer"
    kind: str  # "queuetasks" | "baseline"
    host: str
    port: int
    secret: str = "loadtest-secret-0123456789abcdef0123456789"
    source: str | None = None
    prefix: str = "op"
    seed: int = 0
    behaviour: Behaviour = field(default_factory=Behaviour)
    max_connect_attempts: int = 5
    #: Open the next wait-sse on the connection of the last one when it ended cleanly, as a
    #: browser's connection pool does (HTTP/1.1 keep-alive).
    reuse_connections: bool = True

    @classmethod
    def from_json(cls, raw: str) -> Config:
        data = json.loads(raw)
        behaviour = Behaviour(**data.pop("behaviour", {}))
        return cls(behaviour=behaviour, **data)


def emit(obj: Json) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def task_latency(data: Json, read_at: float) -> float | None:
    payload = data.get("payload")
    source = payload if isinstance(payload, dict) else data
    sent = source.get("t")
    return read_at - sent if isinstance(sent, int | float) else None


class Op:
    __slots__ = (
        "connected_once",
        "gone",
        "headers",
        "id",
        "last_task",
        "offer_task",
        "scope",
        "stream",
        "vanished_task",
    )

    def __init__(self, op_id: str, headers: dict[str, str]) -> None:
        self.id = op_id
        self.headers = headers
        self.scope = trio.CancelScope()
        self.stream: SseStream | None = None
        #: The offer this stream holds now (None after offer-ended, or on a new stream until
        #: the server sends the offer again); ``last_task`` remembers the last one seen, so that
        #: a re-sent offer is not timed twice.
        self.offer_task: str | None = None
        self.last_task: str | None = None
        self.vanished_task: str | None = None
        self.connected_once = False
        self.gone = False


class OperatorWorker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.ops: list[Op] = []
        self.pool = Pool(cfg.host, cfg.port, cfg.source)
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()
        # (taskId, operatorId, read_at, latency or None, first time this op saw this task)
        self.offers: list[tuple[str, str, float, float | None, bool]] = []
        self.assigned: list[tuple[str, str, float]] = []
        self.hold = False
        self.stopping = False
        self.live = 0
        self.ramp_slots = trio.Semaphore(1)
        self.nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ operators

    async def run_op(self, op: Op, slot: Callable[[], None]) -> None:
        attempts = 0
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slot()

        target = f"{BASE_PATH}/wait-sse"
        spare: Conn | None = None  # the last stream's connection, when it ended cleanly
        with op.scope:
            try:
                while not (self.stopping or op.gone):
                    try:
                        reuse, spare = spare, None
                        status, stream, _body = await open_sse(
                            self.cfg.host, self.cfg.port, target, op.headers, self.cfg.source,
                            reuse=reuse,
                        )
                        if reuse is not None:
                            kept = stream is not None and stream.conn is reuse
                            self.counts["reused" if kept else "reuse-failed"] += 1
                    except (OSError, HttpError) as exc:
                        self.errors[f"connect:{type(exc).__name__}"] += 1
                        stream, status = None, 0
                    if stream is None:
                        if status:
                            self.errors[f"status:{status}"] += 1
                        attempts += 1
                        if not op.connected_once and attempts >= self.cfg.max_connect_attempts:
                            self.counts["ramp_failed"] += 1
                            return
                        await trio.sleep(0.2 * attempts + self.rng.random() * 0.3)
                        continue
                    op.stream = stream
                    # An offer that ended while no stream was open is never told: the server
                    # re-sends the offer on this stream if it is still open.
                    op.offer_task = None
                    self.live += 1
                    try:
                        await self.read_stream(op, stream, release)
                        if self.cfg.reuse_connections and not (self.stopping or op.gone):
                            spare = stream.detach()
                    finally:
                        self.live -= 1
                        op.stream = None
                        stream.close()
                    if not (self.stopping or op.gone):
                        self.counts["reconnects"] += 1
            finally:
                if spare is not None:
                    spare.close()
                release()

    async def read_stream(self, op: Op, stream: SseStream, connected: Callable[[], None]) -> None:
        kind = self.cfg.kind
        while (ev := await stream.next_event()) is not None:
            if ev.event == "connection":
                if ev.data == '"keep-alive"':
                    self.counts["keepalives"] += 1
                elif not op.connected_once:
                    op.connected_once = True
                    self.counts["connected"] += 1
                    connected()
                continue
            if ev.event == "offer-ended":
                try:
                    reason = str(json.loads(ev.data).get("reason"))
                except ValueError:
                    reason = "unparsable"
                self.ended[reason] += 1
                op.offer_task = None
                continue
            if ev.event != "task":
                self.counts[f"event:{ev.event}"] += 1
                continue
            read_at = now()
            try:
                data = json.loads(ev.data)
            except ValueError:
                self.errors["bad-task-json"] += 1
                continue
            task_id = str(data.get("taskId"))
            first = task_id != op.last_task
            op.last_task = task_id
            self.offers.append((task_id, op.id, read_at, task_latency(data, read_at), first))
            self.counts["offers"] += 1
            if kind == "baseline":
                continue
            if data.get("assigned"):
                self.counts["pushed"] += 1
                continue
            op.offer_task = task_id
            if self.hold:
                continue
            action = self.cfg.behaviour.choose(self.rng, allow_vanish=op.vanished_task != task_id)
            self.counts[f"action:{action}"] += 1
            if action == "ignore":
                continue
            if action == "vanish":
                op.vanished_task = task_id
                stream.close()
                await trio.sleep(self.rng.uniform(*self.cfg.behaviour.vanish_for))
                return
            await trio.sleep(self.cfg.behaviour.think(self.rng))
            verb = "assign" if action == "accept" else "reject"
            try:
                status, _ = await self.pool.request(
                    "POST", f"{BASE_PATH}/{task_id}/{verb}", op.headers, b""
                )
            except (OSError, HttpError) as exc:
                self.errors[f"{verb}:{type(exc).__name__}"] += 1
                continue
            self.counts[f"{verb}:{status}"] += 1
            if verb == "assign" and status == 200:
                self.assigned.append((task_id, op.id, now()))

    async def ramp(self, count: int, concurrency: int, rate: float) -> None:
        assert self.nursery is not None
        slots = trio.Semaphore(max(1, concurrency))
        start = trio.current_time()
        secret = self.cfg.secret
        base = len(self.ops)
        for i in range(base, base + count):
            if self.stopping:
                return
            await slots.acquire()
            if rate > 0:
                await trio.sleep_until(start + (i - base) / rate)
            op_id = f"{self.cfg.prefix}{i}"
            token = operator_token(secret, op_id, grade=i % 4)
            op = Op(op_id, {"Authorization": f"Bearer {token}"})
            self.ops.append(op)
            self.nursery.start_soon(self.run_op, op, slots.release)

    def vanish(self, count: int, offers_first: bool) -> Json:
        live = [op for op in self.ops if op.stream is not None and not op.gone]
        if offers_first:
            live.sort(key=lambda op: op.offer_task is None)
        chosen = live[:count]
        tasks = [op.offer_task for op in chosen if op.offer_task is not None]
        for op in chosen:
            op.gone = True
            op.scope.cancel()
            if op.stream is not None:
                op.stream.close()
        return {"ev": "vanished", "n": len(chosen), "tasks": tasks, "t": now()}

    def progress(self) -> Json:
        return {
            "ev": "progress",
            "t": now(),
            "connected": self.counts["connected"],
            "live": self.live,
            "failed": self.counts["ramp_failed"],
            "offers": self.counts["offers"],
            "keepalives": self.counts["keepalives"],
            "open_offers": sum(1 for op in self.ops if op.offer_task is not None and not op.gone),
            "errors": sum(self.errors.values()),
        }

    def report(self) -> Json:
        return {
            "ev": "report",
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "ended": dict(self.ended),
            "offers": self.offers,
            "assigned": self.assigned,
            "ops": len(self.ops),
            "gone": sum(1 for op in self.ops if op.gone),
        }

    async def handle(self, msg: Json) -> Json | None:
        cmd = msg["cmd"]
        if cmd == "ramp":
            assert self.nursery is not None
            self.nursery.start_soon(self.ramp, msg["count"], msg["concurrency"], msg["rate"])
            return None
        if cmd == "hold":
            self.hold = bool(msg["on"])
            return {"ev": "ok"}
        if cmd == "vanish":
            return self.vanish(msg["count"], msg.get("offers_first", True))
        if cmd == "progress":
            return self.progress()
        if cmd == "report":
            return self.report()
        raise ValueError(f"unknown command {cmd!r}")

    def stop(self) -> None:
        self.stopping = True
        for op in self.ops:
            op.scope.cancel()
            if op.stream is not None:
                op.stream.close()
        self.pool.close()


# ---------------------------------------------------------------------- producer


class ProducerWorker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.pool = Pool(cfg.host, cfg.port, cfg.source, max_idle=64)
        self.headers = {
            "Authorization": f"Bearer {producer_token(cfg.secret)}",
            "Content-Type": "application/json",
        }
        self.added = 0
        self.errors: Counter[str] = Counter()
        self.nursery: trio.Nursery | None = None

    async def _send(self, path: str, body: Json) -> int:
        raw = json.dumps(body, separators=(",", ":")).encode()
        try:
            status, _ = await self.pool.request("POST", path, self.headers, raw)
        except (OSError, HttpError) as exc:
            self.errors[type(exc).__name__] += 1
            return 0
        if status >= 300:
            self.errors[f"status:{status}"] += 1
        return status

    async def add_task(self, task_id: str) -> tuple[str, float, int]:
        sent = now()
        body = {
            "taskId": task_id,
            "priority": self.rng.randint(0, 9),
            "payload": {"t": sent},
        }
        status = await self._send(f"{BASE_PATH}/tasks", body)
        if status == 201:
            self.added += 1
        return task_id, sent, status

    async def push(self, operator: str, task_id: str) -> tuple[str, float, int]:
        sent = now()
        status = await self._send(f"/push/{operator}", {"taskId": task_id, "t": sent})
        if status == 200:
            self.added += 1
        return task_id, sent, status

    async def produce(self, msg: Json) -> Json:
        rate: float = msg["rate"]
        duration: float = msg["duration"]
        prefix: str = msg.get("prefix", "t")
        push_to: list[str] | None = msg.get("push_to")
        total = int(rate * duration)
        slots = trio.Semaphore(msg.get("concurrency", 64))
        results: list[tuple[str, float, int]] = []

        async def one(i: int) -> None:
            try:
                task_id = f"{prefix}{i}"
                if push_to is not None:
                    results.append(await self.push(push_to[i % len(push_to)], task_id))
                else:
                    results.append(await self.add_task(task_id))
            finally:
                slots.release()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(total):
                await trio.sleep_until(start + i / rate)
                await slots.acquire()
                nursery.start_soon(one, i)
        return {"ev": "produced", "tasks": results, "errors": dict(self.errors), "t": now()}

    async def verify(self, ids: list[str]) -> Json:
        states: dict[str, Any] = {}
        slots = trio.Semaphore(32)

        async def one(task_id: str) -> None:
            async with slots:
                try:
                    status, body = await self.pool.request(
                        "GET", f"{BASE_PATH}/tasks/{task_id}", self.headers
                    )
                except (OSError, HttpError) as exc:
                    states[task_id] = [f"error:{type(exc).__name__}", None]
                    return
                if status != 200:
                    states[task_id] = [f"http:{status}", None]
                    return
                result = json.loads(body).get("result") or {}
                states[task_id] = [result.get("state"), result.get("operatorId")]

        async with trio.open_nursery() as nursery:
            for task_id in ids:
                nursery.start_soon(one, task_id)
        return {"ev": "verified", "states": states}

    async def handle(self, msg: Json) -> Json | None:
        cmd = msg["cmd"]
        if cmd == "produce":
            return await self.produce(msg)
        if cmd == "add":
            results = [await self.add_task(task_id) for task_id in msg["ids"]]
            return {"ev": "added", "tasks": results}
        if cmd == "verify":
            return await self.verify(msg["ids"])
        if cmd == "progress":
            return {
                "ev": "progress",
                "t": now(),
                "added": self.added,
                "errors": sum(self.errors.values()),
            }
        raise ValueError(f"unknown command {cmd!r}")

    def stop(self) -> None:
        self.pool.close()


# ------------------------------------------------------------------------- main


async def serve_commands(worker: OperatorWorker | ProducerWorker) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        worker.nursery = nursery

        async def run(msg: Json, handler: Callable[[Json], Awaitable[Json | None]]) -> None:
            reply = await handler(msg)
            if reply is not None:
                reply["id"] = msg.get("id")
                emit(reply)

        buf = b""
        try:
            while True:
                data = await stdin.receive_some(65536)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if msg["cmd"] == "stop":
                        emit({"ev": "stopped", "id": msg.get("id")})
                        return
                    nursery.start_soon(run, msg, worker.handle)
        finally:
            worker.stop()
            nursery.cancel_scope.cancel()


def main() -> None:
    cfg = Config.from_json(sys.argv[1])
    worker: OperatorWorker | ProducerWorker = (
        OperatorWorker(cfg) if cfg.role == "operators" else ProducerWorker(cfg)
    )
    emit({"ev": "ready", "pid": os.getpid()})
    trio.run(serve_commands, worker)


if __name__ == "__main__":
    main()
