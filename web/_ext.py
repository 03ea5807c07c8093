"""``QueueTasks``: the Quart-Trio extension that mounts the API and runs the engine."""

from __future__ import annotations

import logging
from pathlib import Path

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Quart, Response, request
from quart_trio import QuartTrio
from queuetasks.engine import Engine, EngineConfig, Hooks, TabStream
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed

from . import _openapi
from ._auth import Auth, DemoAuth, HostAuth, JwtAuth, OperatorProvider, RequestCheck
from ._config import WebConfig
from ._errors import MethodNotAllowed, RouteNotFound, envelope, error_response
from ._lean import LeanRoutes
from ._metrics import CONTENT_TYPE, Metrics
from ._routes import SCOPE_STREAM_KEY, make_blueprint
from ._sse import Drain

log = logging.getLogger("queuetasks.web")

STATIC = Path(__file__).parent / "static"
_CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"
_CORS_METHODS = "GET, POST, DELETE, OPTIONS"
_FINAL_SEND_TIMEOUT = 30.0


class QueueTasks:
    """Mount QueueTasks into a Quart-Trio app: ``QueueTasks(app, ...)`` or ``init_app(app)``.

    - ``operator_provider``: ``async (request) -> Operator`` (raise ``Unauthenticated`` for
      401); or give ``auth`` (an ``Auth``); with neither, JWTs when ``config.jwt_secret`` is set,
      else the demo identities from query parameters.
    - ``hooks``: the host's ``Hooks`` (``can_wait``, ``confirm_assignment``, ...).
    - ``producer_check``/``supervisor_check``: ``async (request) -> None`` guards of the producer
      API and ``queue-operators`` when ``operator_provider`` is used.
    - ``metrics_path``, ``health_path``: outside the base path; None turns one off.

    The engine starts in the app's nursery before serving and stops after serving; every open
    stream is first told to reconnect later (``drain``).
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        config: WebConfig | None = None,
        hooks: Hooks | None = None,
        operator_provider: OperatorProvider | None = None,
        producer_check: RequestCheck | None = None,
        supervisor_check: RequestCheck | None = None,
        auth: Auth | None = None,
        engine: Engine | None = None,
        openapi: bool = True,
        metrics_path: str | None = "/metrics",
        health_path: str | None = "/healthz",
    ) -> None:
        self.config = config = config or WebConfig()
        if auth is None:
            if operator_provider is not None:
                auth = HostAuth(operator_provider, producer_check=producer_check,
                                supervisor_check=supervisor_check)
            elif config.jwt_secret is not None:
                auth = JwtAuth(config.jwt_secret)
            else:
                auth = DemoAuth()
        self.auth: Auth = auth
        self.engine = engine or Engine(
            EngineConfig(
                offer_timeout=config.offer_timeout,
                disconnect_grace=config.disconnect_grace,
                hook_timeout=config.hook_timeout,
                max_streams=config.stream_limit,
            ),
            hooks,
        )
        self.drain = Drain(config.shutdown_retry_ms)
        self.metrics = Metrics(self.engine)
        self.engine.add_listener(self.metrics.listener)
        self._openapi = openapi
        self._metrics_path = metrics_path
        self._health_path = health_path
        self._engine_scope = trio.CancelScope()
        self.app: Quart | None = None
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<QueueTasks {self.config.base_path} {self.engine!r}>"

    # ------------------------------------------------------------------ mounting

    def init_app(self, app: Quart) -> None:
        if not isinstance(app, QuartTrio):
            raise TypeError("QueueTasks needs a quart_trio.QuartTrio app (it runs on trio)")
        if "queuetasks" in app.extensions:
            raise RuntimeError("QueueTasks is already installed on this app")
        self.app = app
        app.extensions["queuetasks"] = self
        app.register_blueprint(make_blueprint(self))
        app.before_serving(self._start)
        app.after_serving(self._stop)
        app.before_request(self._routing_errors)
        app.after_request(self._cors)
        if self._metrics_path:
            app.add_url_rule(self._metrics_path, "queuetasks_metrics", self._metrics_view)
        if self._health_path:
            app.add_url_rule(self._health_path, "queuetasks_health", self._health_view)
        if self.config.console:
            app.add_url_rule("/", "queuetasks_console", self._console_view)
            app.add_url_rule("/supervisor", "queuetasks_supervisor", self._supervisor_view)
            app.add_url_rule("/static/queuetasks/<name>", "queuetasks_static",
                             self._static_view)
        if self._openapi:
            _openapi.install(app)
        inner = app.asgi_app
        lean = (LeanRoutes(self) if self.config.lean_path and getattr(self.auth, "lean", False)
                else None)

        async def asgi_app(scope: Scope, receive: ASGIReceiveCallable,
                           send: ASGISendCallable) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            if lean is not None and (handler := lean.match(scope)) is not None:
                await handler(scope, receive, send)
                return

            async def send_final_shielded(message: ASGISendEvent) -> None:
                # The last body message makes hypercorn close a `Connection: close` socket;
                # quart-trio cancels the request as soon as hypercorn reports that close,
                # which interrupted the close itself and left the socket open (NOTES).
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    with trio.CancelScope(shield=True,
                                          deadline=trio.current_time() + _FINAL_SEND_TIMEOUT):
                        await send(message)
                else:
                    await send(message)

            try:
                await inner(scope, receive, send_final_shielded)
            finally:
                # Safety net: a wait-sse response cancelled before its body was iterated
                # (the client left in that instant) still closes its tab.
                stream: TabStream | None = scope.get(SCOPE_STREAM_KEY)  # type: ignore[assignment]
                if stream is not None:
                    stream.close()

        app.asgi_app = asgi_app  # type: ignore[method-assign]

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        assert isinstance(self.app, QuartTrio)
        if self.config.demo and isinstance(self.auth, DemoAuth):
            log.warning("queuetasks: DEMO MODE, no JWT secret configured: anyone may act as any "
                        "operator and add tasks. Set QUEUETASKS_JWT_SECRET for production.")
        self.drain.draining = False
        self._engine_scope = trio.CancelScope()
        await self.app.nursery.start(self._run_engine)

    async def _run_engine(self, *, task_status: trio.TaskStatus[Engine]) -> None:
        with self._engine_scope:
            await self.engine.run(task_status=task_status)

    async def _stop(self) -> None:
        self.start_drain()
        self._engine_scope.cancel()

    def start_drain(self) -> None:
        """Graceful shutdown, step one: every open stream gets a jittered ``retry:`` and ends;
        new ``wait-sse`` calls get the same. Synchronous; the engine keeps running."""
        if not self.drain.draining:
            log.info("queuetasks: draining %d open streams",
                     self.engine.statistics()["open_streams"])
        self.drain.start()

    @property
    def open_streams(self) -> int:
        return self.engine.statistics()["open_streams"]

    # ------------------------------------------------------------------ app-wide handlers

    def _under_base(self, path: str) -> bool:
        base = self.config.base_path
        return path == base or path.startswith(base + "/")

    async def _routing_errors(self) -> Response | None:
        """404/405 under the base path in the envelope (an app-wide error handler would fight
        the host's own)."""
        error = request.routing_exception
        if error is None or not self._under_base(request.path):
            return None
        if isinstance(error, WerkzeugMethodNotAllowed):
            response = error_response(MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}"))
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods or ()))
            return response
        if isinstance(error, HTTPException) and error.code == 404:
            return error_response(RouteNotFound(f"no route {request.path}"))
        return envelope(None, status=getattr(error, "code", 400) or 400,
                        error=str(getattr(error, "description", error)))

    async def _cors(self, response: Response) -> Response:
        if self._under_base(request.path):
            headers = response.headers
            headers.setdefault("Access-Control-Allow-Origin", self.config.cors_origin)
            if request.method == "OPTIONS":
                headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
                headers["Access-Control-Allow-Methods"] = _CORS_METHODS
                headers["Access-Control-Max-Age"] = "600"
        return response

    # ------------------------------------------------------------------ extra routes

    async def _metrics_view(self) -> Response:
        return Response(self.metrics.render(), content_type=CONTENT_TYPE)

    async def _health_view(self) -> Response:
        ok = self.engine.running and not self.drain.draining
        status = "ok" if ok else ("draining" if self.drain.draining else "stopped")
        return envelope({"status": status, **self.engine.statistics()},
                        status=200 if ok else 503, error=None if ok else status)

    async def _console_view(self) -> Response:
        return self._page("console.html")

    async def _supervisor_view(self) -> Response:
        return self._page("supervisor.html")

    def _page(self, name: str) -> Response:
        html = (STATIC / name).read_text(encoding="utf-8")
        html = html.replace("{{BASE_PATH}}", self.config.base_path)
        response = Response(html, content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _static_view(self, name: str) -> Response:
        return _static_file(name)


_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


def _static_file(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return Response("not found", status=404, content_type="text/plain")
    response = Response(path.read_bytes(), content_type=_TYPES.get(path.suffix, "text/plain"))
    response.headers["Cache-Control"] = "no-cache"
    return response
