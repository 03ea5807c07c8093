"""Subprocesses of the scale harness: a server under test, and JSON-line client workers.

Every process started here is killed in a ``finally`` (the context managers below), also when the
harness is cancelled or fails.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import trio

REPO = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"listening on (http://[\w.\[\]:-]+)")
Json = dict[str, Any]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
    }


async def _kill(proc: trio.Process) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        if proc.returncode is None:
            proc.terminate()
            with trio.move_on_after(2):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class Server:
    """A server under test: its process, URL and psutil handle."""

    def __init__(self, proc: trio.Process, url: str) -> None:
        self.proc = proc
        self.url = url
        hostport = url.split("://", 1)[1]
        host, _, port = hostport.rpartition(":")
        self.host = host
        self.port = int(port)
        self.ps = psutil.Process(proc.pid)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def num_fds(self) -> int:
        return int(self.ps.num_fds())

    def fd_limit(self) -> int:
        return int(self.ps.rlimit(psutil.RLIMIT_NOFILE)[0])


@asynccontextmanager
async def start_server(
    cmd: Sequence[str], log_path: Path, startup_timeout: float = 60.0
) -> AsyncIterator[Server]:
    """Start ``cmd``; wait for its ``listening on http://...`` line on stderr; kill it on exit."""
    log = log_path.open("wb")
    proc = await trio.lowlevel.open_process(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        stderr = proc.stderr
        buf = b""
        url: str | None = None
        with trio.move_on_after(startup_timeout):
            while url is None:
                data = await stderr.receive_some(65536)
                if not data:
                    break
                log.write(data)
                buf += data
                if m := LISTENING.search(buf):
                    url = m.group(1).decode()
        log.flush()
        if url is None:
            raise RuntimeError(f"server did not report 'listening on' (see {log_path}): {cmd}")
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                # A full stderr pipe would block the server: keep reading into the log.
                while data := await stderr.receive_some(65536):
                    log.write(data)

            nursery.start_soon(drain)
            try:
                yield Server(proc, url)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await _kill(proc)
        log.close()


class Worker:
    """A ``loadtests._worker`` process driven by JSON lines."""

    def __init__(self, proc: trio.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.ids = itertools.count(1)
        self.waiting: dict[int, tuple[trio.Event, list[Json]]] = {}
        self.ps = psutil.Process(proc.pid)
        self.send_lock = trio.Lock()  # the sampler and a phase may talk to one worker at once

    async def read_loop(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while data := await self.proc.stdout.receive_some(1 << 20):
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                msg = json.loads(line)
                waiter = self.waiting.pop(msg.get("id"), None)
                if waiter is not None:
                    waiter[1].append(msg)
                    waiter[0].set()
        for event, _ in self.waiting.values():
            event.set()

    async def send(self, msg: Json) -> None:
        assert self.proc.stdin is not None
        async with self.send_lock:
            await self.proc.stdin.send_all(json.dumps(msg).encode() + b"\n")

    async def call(self, cmd: str, wait_limit: float = 600.0, **args: Any) -> Json:
        """Send a command and wait for its reply (raises on timeout or worker exit)."""
        msg_id = next(self.ids)
        event, box = trio.Event(), []
        self.waiting[msg_id] = (event, box)
        await self.send({"cmd": cmd, "id": msg_id, **args})
        with trio.fail_after(wait_limit):
            await event.wait()
        if not box:
            raise RuntimeError(f"worker {self.name} exited (returncode {self.proc.returncode})")
        return box[0]

    async def cast(self, cmd: str, **args: Any) -> None:
        """Send a command that has no reply."""
        await self.send({"cmd": cmd, "id": None, **args})

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)


@asynccontextmanager
async def start_workers(configs: Sequence[Json], log_dir: Path) -> AsyncIterator[list[Worker]]:
    """Start one worker process per config; stop and kill them all on exit."""
    procs: list[trio.Process] = []
    logs = []
    try:
        workers = []
        for i, cfg in enumerate(configs):
            log = (log_dir / f"worker-{cfg['role']}-{i}.log").open("wb")
            logs.append(log)
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "loadtests._worker", json.dumps(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=_env(),
                cwd=REPO,
            )
            procs.append(proc)
            workers.append(Worker(proc, f"{cfg['role']}-{i}"))
        async with trio.open_nursery() as nursery:
            for w in workers:
                nursery.start_soon(w.read_loop)
            try:
                yield workers
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    for w in workers:
                        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            await w.send({"cmd": "stop", "id": None})
                nursery.cancel_scope.cancel()
    finally:
        for proc in procs:
            await _kill(proc)
        for log in logs:
            log.close()
