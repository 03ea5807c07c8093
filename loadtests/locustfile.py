"""Locust workload for QueueTasks: SSE operators and a task producer.

Headless, one process (a few thousand users)::

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8080 \\
        -u 2000 -r 100 -t 5m --qt-secret "$QUEUETASKS_JWT_SECRET"

20,000 operators: ``--processes 4`` (one master, four forked workers) and several loopback source
addresses (``--qt-sources``) so that no source address runs out of ephemeral ports::

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8080 --processes 4 \\
        -u 20000 -r 250 -t 10m --qt-sources 127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5 \\
        --csv loadtests/results/locust

Web UI: drop ``--headless`` (and ``-u/-r/-t``) and open http://127.0.0.1:8089.

Operators (``OperatorUser``) authenticate with a JWT they mint (HS256, ``--qt-secret``), call
``take-free``, then wait on ``wait-sse`` read line by line on a raw socket (Locust's
``FastHttpUser.iter_lines`` holds back small events until 1 KiB has arrived). On an offer they
accept or reject after a think time (``--qt-think``), or never answer, or close the tab mid-offer
and come back, or open a second tab that must see the same offer (``--qt-mix``); then they wait
again. The producer (``ProducerUser``, ``--qt-producers`` users) adds tasks with priorities, pools
and grades at ``--qt-task-rate`` tasks/s each.

Custom entries in Locust's statistics (request type / name):

- ``METRIC time-to-offer``: task added by the producer -> offer read by the operator (ms);
- ``METRIC time-to-assign``: task added -> ``assign`` answered 200;
- ``OFFER <reason>``: offers by outcome (assigned, rejected, expired, withdrawn, cancelled), timed
  from offer read to ``offer-ended``; ``OFFER second-tab-same`` / failures ``second-tab-differs``;
- ``SSE connect`` (time to the ``connection`` event), ``SSE reconnect`` (stream ended without an
  ``offer-ended``), ``SSE waiting-peak`` (logged summary of concurrent waiting operators).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import socket
import time
import uuid
from typing import Any

import gevent
from locust import User, between, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests._sse import SseParser
from loadtests.tokens import BASE_PATH, operator_token, producer_token

log = logging.getLogger("queuetasks.locust")
DEFAULT_SECRET = os.environ.get(
    "QUEUETASKS_JWT_SECRET", "loadtest-secret-0123456789abcdef0123456789"
)
_ids = itertools.count()
STATE: dict[str, Any] = {"waiting": 0, "peak": 0, "workers": {}, "peak_total": 0}


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    g = parser.add_argument_group("QueueTasks")
    g.add_argument("--qt-secret", default=DEFAULT_SECRET, help="JWT HS256 secret of the server")
    g.add_argument("--qt-sources", default="", help="comma-separated loopback source addresses")
    g.add_argument("--qt-think", default="exp:2", help="exp:MEAN | uniform:LO:HI | const:S")
    g.add_argument(
        "--qt-mix",
        default="accept=0.6,reject=0.2,ignore=0.05,close=0.1,tab=0.05",
        help="what an operator does with an offer (weights)",
    )
    g.add_argument("--qt-task-rate", type=float, default=20.0, help="tasks/s per producer user")
    g.add_argument("--qt-producers", type=int, default=1, help="number of producer users")
    g.add_argument("--qt-pools", default="default", help="pools used by tasks and operators")
    g.add_argument("--qt-max-grade", type=int, default=0, help="operator/task grades 0..N")
    g.add_argument("--qt-read-timeout", type=float, default=90.0, help="> the keep-alive interval")
    g.add_argument("--qt-close-for", type=float, default=3.0, help="max s away after closing")


def _opts(env: Environment) -> Any:
    return env.parsed_options


def think_time(spec: str) -> float:
    kind, *args = spec.split(":")
    nums = [float(a) for a in args]
    if kind == "exp":
        return random.expovariate(1 / nums[0]) if nums[0] > 0 else 0.0
    if kind == "uniform":
        return random.uniform(nums[0], nums[1])
    if kind == "const":
        return nums[0]
    raise ValueError(f"bad think-time spec {spec!r}")


def parse_mix(spec: str) -> tuple[list[str], list[float]]:
    pairs = [p.split("=") for p in spec.split(",") if p]
    return [k.strip() for k, _ in pairs], [float(v) for _, v in pairs]


def fire(env: Environment, kind: str, name: str, ms: float, exc: Exception | None = None) -> None:
    env.events.request.fire(
        request_type=kind,
        name=name,
        response_time=ms,
        response_length=0,
        exception=exc,
        context={},
    )


# ------------------------------------------------------------------ raw HTTP on gevent sockets


class RawHttp:
    """One-shot requests and SSE streams on plain (gevent-patched) sockets."""

    def __init__(self, host: str, port: int, source: str | None, timeout: float) -> None:
        self.host, self.port, self.source, self.timeout = host, port, source, timeout

    def connect(self) -> socket.socket:
        src = (self.source, 0) if self.source else None
        sock = socket.create_connection((self.host, self.port), self.timeout, src)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _head(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    @staticmethod
    def read_head(f: Any) -> tuple[int, dict[str, str]]:
        status_line = f.readline()
        if not status_line:
            raise ConnectionError("closed before the response")
        status = int(status_line.split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Connect, send, read the whole response, close: no idle sockets held per user."""
        sock = self.connect()
        f = sock.makefile("rb")
        try:
            sock.sendall(self._head(method, path, headers, body))
            status, head = self.read_head(f)
            if head.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while (size := int(f.readline().split(b";")[0], 16)) > 0:
                    parts.append(f.read(size))
                    f.readline()
                payload = b"".join(parts)
            else:
                payload = f.read(int(head.get("content-length", "0")))
            return status, payload
        finally:
            f.close()
            sock.close()

    def open_stream(self, path: str, headers: dict[str, str]) -> tuple[int, SseReader | None]:
        sock = self.connect()
        try:
            sock.sendall(self._head("GET", path, {"Accept": "text/event-stream", **headers}, b""))
            f = sock.makefile("rb")
            status, head = self.read_head(f)
        except BaseException:
            sock.close()
            raise
        if status != 200:
            f.close()
            sock.close()
            return status, None
        return status, SseReader(sock, f, head.get("transfer-encoding", "").lower() == "chunked")


class SseReader:
    """Reads an event stream line by line as bytes arrive (never waits for a full buffer)."""

    def __init__(self, sock: socket.socket, f: Any, chunked: bool) -> None:
        self.sock, self.f, self.chunked = sock, f, chunked
        self.parser = SseParser()

    def _next_bytes(self) -> bytes:
        if not self.chunked:
            return self.f.readline()
        line = self.f.readline()
        if not line:
            return b""
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return b""
        data = self.f.read(size)
        self.f.readline()
        return data

    def next_event(self) -> Any:
        """The next event, or None when the stream ended (raises socket.timeout when idle)."""
        while not self.parser.events:
            data = self._next_bytes()
            if not data:
                return None
            self.parser.feed(data)
        return self.parser.events.popleft()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.f.close()
        self.sock.close()


# ------------------------------------------------------------------------------ users


def _split_host(host: str) -> tuple[str, int]:
    hostport = host.split("://", 1)[-1].rstrip("/")
    h, _, p = hostport.rpartition(":")
    return h, int(p)


class OperatorUser(User):
    """An operator waiting in a browser tab (see the module docstring)."""

    weight = 100
    wait_time = between(0.0, 0.2)

    def on_start(self) -> None:
        opts = _opts(self.environment)
        n = next(_ids)
        self.op_id = f"op-{os.getpid()}-{n}"
        pools = opts.qt_pools.split(",")
        token = operator_token(
            opts.qt_secret,
            self.op_id,
            grade=random.randint(0, opts.qt_max_grade),
            pools=random.sample(pools, random.randint(1, len(pools))),
        )
        self.headers = {"Authorization": f"Bearer {token}"}
        sources = [s for s in opts.qt_sources.split(",") if s]
        source = sources[(n + os.getpid()) % len(sources)] if sources else None
        host, port = _split_host(self.host or "")
        self.http = RawHttp(host, port, source, opts.qt_read_timeout)
        self.mix = parse_mix(opts.qt_mix)
        self.last_offer: str | None = None

    def _post(self, name: str, path: str) -> tuple[int, Any]:
        start = time.perf_counter()
        try:
            status, body = self.http.request("POST", path, self.headers)
        except OSError as exc:
            fire(self.environment, "POST", name, (time.perf_counter() - start) * 1000, exc)
            return 0, None
        ms = (time.perf_counter() - start) * 1000
        ok = status < 400 or (name in ("assign", "reject") and status == 403)
        err = None if ok else RuntimeError(f"HTTP {status}")
        fire(self.environment, "POST", name if status < 400 else f"{name} {status}", ms, err)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    @task
    def wait_for_a_task(self) -> None:
        status, reply = self._post("take-free", f"{BASE_PATH}/take-free")
        if status == 200 and reply and (reply.get("result") or {}).get("taskId"):
            fire(self.environment, "OFFER", "take-free-hit", 0)
            return
        self.wait_once()

    def _open(self) -> Any:
        start = time.perf_counter()
        try:
            status, stream = self.http.open_stream(f"{BASE_PATH}/wait-sse", self.headers)
        except OSError as exc:
            fire(self.environment, "SSE", "connect", (time.perf_counter() - start) * 1000, exc)
            gevent.sleep(1.0)
            return None
        if stream is None:
            exc = RuntimeError(f"HTTP {status}")
            fire(self.environment, "SSE", f"connect {status}", 0, exc)
            gevent.sleep(1.0 if status != 204 else 5.0)
            return None
        return stream, start

    def wait_once(self) -> None:
        """One wait-sse cycle: until offer-ended, a close, or the stream ends."""
        opened = self._open()
        if opened is None:
            return
        stream, start = opened
        STATE["waiting"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["waiting"])
        offer_at: float | None = None
        task_id: str | None = None
        try:
            while True:
                try:
                    ev = stream.next_event()
                except (TimeoutError, OSError) as exc:
                    fire(self.environment, "SSE", "read", 0, exc)
                    return
                if ev is None:
                    fire(self.environment, "SSE", "reconnect", 0)
                    return
                if ev.event == "connection":
                    if ev.data != '"keep-alive"':
                        ms = (time.perf_counter() - start) * 1e3
                        fire(self.environment, "SSE", "connect", ms)
                    continue
                if ev.event == "offer-ended":
                    reason = json.loads(ev.data).get("reason", "?")
                    held = 0.0 if offer_at is None else (time.time() - offer_at) * 1000
                    fire(self.environment, "OFFER", str(reason), held)
                    self.last_offer = None
                    return
                if ev.event != "task":
                    continue
                data = json.loads(ev.data)
                task_id = str(data.get("taskId"))
                sent = (data.get("payload") or {}).get("t") if data.get("payload") else None
                offer_at = time.time()
                if isinstance(sent, int | float) and task_id != self.last_offer:
                    fire(self.environment, "METRIC", "time-to-offer", (offer_at - sent) * 1000)
                if data.get("assigned"):
                    fire(self.environment, "OFFER", "pushed", 0)
                    return
                # Back at an offer this operator walked away from: answer it this time.
                again = task_id == self.last_offer
                action = "accept" if again else random.choices(*self.mix)[0]
                self.last_offer = task_id
                if action == "ignore":
                    continue
                if action == "close":
                    stream.close()
                    gevent.sleep(random.uniform(0.2, _opts(self.environment).qt_close_for))
                    return
                if action == "tab":
                    gevent.spawn(self.second_tab, task_id)
                    action = "accept"
                gevent.sleep(think_time(_opts(self.environment).qt_think))
                verb = "assign" if action == "accept" else "reject"
                code, _ = self._post(verb, f"{BASE_PATH}/{task_id}/{verb}")
                if verb == "assign" and code == 200 and isinstance(sent, int | float):
                    fire(self.environment, "METRIC", "time-to-assign", (time.time() - sent) * 1000)
        finally:
            STATE["waiting"] -= 1
            stream.close()

    def second_tab(self, task_id: str) -> None:
        """A second tab during an open offer must get the same offer, never a second task."""
        opened = self._open()
        if opened is None:
            return
        stream = opened[0]
        try:
            with gevent.Timeout(30, False):
                while (ev := stream.next_event()) is not None:
                    if ev.event == "task":
                        got = str(json.loads(ev.data).get("taskId"))
                        if got == task_id:
                            fire(self.environment, "OFFER", "second-tab-same", 0)
                        else:
                            exc = RuntimeError(f"second tab got {got}, first has {task_id}")
                            fire(self.environment, "OFFER", "second-tab-differs", 0, exc)
                    elif ev.event == "offer-ended":
                        return
        except OSError:
            pass
        finally:
            stream.close()


class ProducerUser(User):
    """Adds tasks with random priorities, pools and minimum grades at a steady rate."""

    fixed_count = 1

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        opts = _opts(env)
        self._pace = constant_throughput(opts.qt_task_rate)
        self.pools = opts.qt_pools.split(",")
        self.headers = {
            "Authorization": f"Bearer {producer_token(opts.qt_secret)}",
            "Content-Type": "application/json",
        }
        host, port = _split_host(self.host or "")
        self.http = RawHttp(host, port, None, 30.0)
        self.prefix = uuid.uuid4().hex[:8]
        self.count = 0

    def wait_time(self) -> float:
        return float(self._pace(self))

    @task
    def add_task(self) -> None:
        self.count += 1
        body = {
            "taskId": f"{self.prefix}-{self.count}",
            "priority": random.randint(0, 9),
            "pool": random.choice(self.pools),
            "minGrade": random.randint(0, _opts(self.environment).qt_max_grade),
            "payload": {"t": time.time()},
        }
        start = time.perf_counter()
        try:
            status, _ = self.http.request(
                "POST", f"{BASE_PATH}/tasks", self.headers, json.dumps(body).encode()
            )
            exc = None if status == 201 else RuntimeError(f"HTTP {status}")
        except OSError as err:
            exc = err
        fire(self.environment, "POST", "tasks", (time.perf_counter() - start) * 1000, exc)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    ProducerUser.fixed_count = environment.parsed_options.qt_producers
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        @events.report_to_master.add_listener
        def _report(client_id: str, data: dict[str, Any]) -> None:
            data["qt_waiting"] = STATE["waiting"]

    elif isinstance(runner, MasterRunner):

        @events.worker_report.add_listener
        def _worker(client_id: str, data: dict[str, Any]) -> None:
            STATE["workers"][client_id] = data.get("qt_waiting", 0)
            STATE["peak_total"] = max(STATE["peak_total"], sum(STATE["workers"].values()))

    if not isinstance(runner, WorkerRunner):

        def _log_waiting() -> None:
            while True:
                gevent.sleep(10)
                now = sum(STATE["workers"].values()) if STATE["workers"] else STATE["waiting"]
                STATE["peak_total"] = max(STATE["peak_total"], now, STATE["peak"])
                log.info("waiting operators now %d, peak %d", now, STATE["peak_total"])

        gevent.spawn(_log_waiting)


@events.quitting.add_listener
def _on_quit(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        peak = max(STATE["peak_total"], STATE["peak"])
        log.info("QueueTasks: peak concurrent waiting operators (open wait-sse streams): %d", peak)
        print(f"QueueTasks: peak concurrent waiting operators (open wait-sse streams): {peak}")
