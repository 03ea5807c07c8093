"""The standalone server: hypercorn's trio worker on the embedded engine, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import socket
import sys
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio
from queuetasks.engine import Hooks

from ._config import WebConfig
from ._ext import STATIC, QueueTasks
from ._gc import GcPacer, GcPauses

log = logging.getLogger("queuetasks.web")


def create_app(config: WebConfig, hooks: Hooks | None = None) -> tuple[QuartTrio, QueueTasks]:
    """The standalone app: JWT identities (or the demo with its console when no secret)."""
    if config.demo and not config.console:
        config = config.replace(console=True)
    here = str(STATIC.parent)
    app = QuartTrio("queuetasks.web", root_path=here, instance_path=here, static_folder=None)
    ext = QueueTasks(app, config=config, hooks=hooks)
    return app, ext


class _HypercornConfig(HypercornConfig):
    """Sets ``TCP_USER_TIMEOUT`` on the listening sockets (accepted ones inherit it), so a peer
    that stopped acknowledging is dropped instead of blocking its writer forever."""

    tcp_user_timeout: float = 0.0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        option = getattr(socket, "TCP_USER_TIMEOUT", None)
        if self.tcp_user_timeout > 0 and option is not None:
            for sock in sockets.insecure_sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, option, int(self.tcp_user_timeout * 1000))
        return sockets


def hypercorn_config(config: WebConfig) -> HypercornConfig:
    hc = _HypercornConfig()
    host = f"[{config.host}]" if ":" in config.host else config.host
    hc.bind = [f"{host}:{config.port}"]
    hc.backlog = config.backlog
    hc.graceful_timeout = config.graceful_timeout
    hc.tcp_user_timeout = config.tcp_user_timeout
    # read_timeout stays None: SSE clients never send, it would cut their streams.
    hc.read_timeout = None
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


async def serve(
    app: QuartTrio,
    ext: QueueTasks,
    *,
    shutdown: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set (or SIGTERM/SIGINT with ``handle_signals``). Reports
    the bound ``http://host:port`` through ``task_status`` and on stderr.

    Shutdown order: every stream gets a jittered ``retry:`` and ends (new ones too), then
    hypercorn stops accepting and lets requests in flight finish (``graceful_timeout``), then
    the engine stops. Cancelling this call instead stops everything at once."""
    config = ext.config
    shutdown = trio.Event() if shutdown is None else shutdown
    stop_hypercorn = trio.Event()
    server_done = trio.Event()

    async def run_hypercorn(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await hypercorn_serve(app, hypercorn_config(config),
                                  shutdown_trigger=stop_hypercorn.wait,
                                  task_status=task_status)
        finally:
            server_done.set()

    with GcPauses(ext.metrics.observe_gc_pause):
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(_watch_signals, shutdown)
            binds: list[str] = await nursery.start(run_hypercorn)
            url = binds[0]
            if config.gc_tuning:
                # Young collections on a clock, full ones rarely: see _gc.py for the pauses
                # the allocation-count trigger caused at 19,000 streams.
                await nursery.start(GcPacer(full_interval=config.gc_full_interval).run)
            print(f"queuetasks: listening on {url}", file=sys.stderr, flush=True)
            if config.demo:
                print("queuetasks: DEMO MODE (no JWT secret): operator console at "
                      f"{url}/ and supervisor page at {url}/supervisor", file=sys.stderr,
                      flush=True)
            task_status.started(url)
            await shutdown.wait()
            # Streams end first, with their final write still in flight: hypercorn lets
            # responses in flight finish (graceful_timeout) once it stops accepting.
            ext.start_drain()
            stop_hypercorn.set()
            await server_done.wait()
            nursery.cancel_scope.cancel()
    log.info("queuetasks: stopped")


async def _watch_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if shutdown.is_set():
                raise KeyboardInterrupt  # a second signal: stop now
            log.warning("queuetasks: %s, shutting down gracefully",
                        signal.Signals(signum).name)
            shutdown.set()


def run(config: WebConfig, hooks: Hooks | None = None) -> None:
    """Blocking: serve until SIGTERM/SIGINT."""
    app, ext = create_app(config, hooks)
    trio.run(partial(serve, app, ext, handle_signals=True))
