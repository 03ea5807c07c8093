"""Settings of the web layer and the standalone server, from defaults, TOML, environment, flags.

Precedence, lowest first: the defaults here, a TOML file, ``QUEUETASKS_*`` environment variables,
command-line flags. Every duration is in float seconds.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "QUEUETASKS_"


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """Everything the web layer and the server take. Immutable; build with ``replace``."""

    #: Where the seed's API is mounted.
    base_path: str = "/api/v1/QueueTasks"
    #: How long an operator has to assign or reject an offer (SPEC section 7).
    offer_timeout: float = 40.0
    #: An ``event: connection`` keep-alive on every idle stream this often.
    keepalive_interval: float = 25.0
    #: How long an offer survives with no open tab; None = ``offer_timeout``.
    disconnect_grace: float | None = None
    #: Limit for each call of an async host hook.
    hook_timeout: float = 10.0
    #: Streams above this get 503; None = the descriptor limit minus a margin of 256 (NOTES:
    #: at the limit the whole server hung), so the server stays reachable.
    max_streams: int | None = None
    #: ``Access-Control-Allow-Origin`` on API and SSE responses.
    cors_origin: str = "*"
    #: HS256 secret for the operators' and producers' JWTs; None = demo mode (standalone only).
    jwt_secret: str | None = None
    #: Request bodies above this many bytes get 413.
    max_body: int = 64 * 1024
    #: The ``retry:`` (milliseconds) sent on connect.
    retry_ms: int = 3000
    #: On shutdown, streams are told to reconnect after a random delay in this range (ms).
    shutdown_retry_ms: tuple[int, int] = (1000, 10_000)
    #: Serve the operator console and the supervisor page (the server turns it on in demo mode).
    console: bool = False
    #: Serve wait-sse, assign, reject and POST tasks straight from ASGI (no Quart request
    #: objects) when the identity is the server's own (JWT or demo). Same contract, less
    #: memory and CPU per connection; host-provided identities always go through Quart.
    lean_path: bool = True
    # ---- standalone server only
    host: str = "127.0.0.1"
    port: int = 8000
    backlog: int = 4096
    #: How long hypercorn lets requests in flight finish on shutdown.
    graceful_timeout: float = 5.0
    #: ``TCP_USER_TIMEOUT`` on the listening socket: dead peers are dropped after this (0 = off).
    tcp_user_timeout: float = 60.0
    #: Freeze start-up objects and run the garbage collector on a clock instead of on
    #: allocation counts (``_gc.py``: bounded pauses with tens of thousands of streams).
    gc_tuning: bool = True
    #: With ``gc_tuning``: seconds between full collections (each stopped the server for
    #: 2.2-2.3 s at 19,000 streams; cyclic garbage that got old waits this long).
    gc_full_interval: float = 600.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        bp = self.base_path
        if not bp.startswith("/") or (len(bp) > 1 and bp.endswith("/")) or "//" in bp:
            raise ConfigError(f"base_path {bp!r} must start with / and not end with /")
        for name in ("offer_timeout", "keepalive_interval", "hook_timeout", "graceful_timeout",
                     "gc_full_interval"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.disconnect_grace is not None and not self.disconnect_grace >= 0:
            raise ConfigError("disconnect_grace must be zero or positive")
        if self.tcp_user_timeout < 0:
            raise ConfigError("tcp_user_timeout must be zero or positive")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if self.max_streams is not None and self.max_streams < 1:
            raise ConfigError("max_streams must be at least 1")
        for name in ("max_body", "backlog", "retry_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        low, high = self.shutdown_retry_ms
        if not 0 <= low <= high:
            raise ConfigError("shutdown_retry_ms must be a range low <= high")
        if self.jwt_secret is not None and not self.jwt_secret:
            raise ConfigError("jwt_secret must not be empty (leave it unset for demo mode)")

    @property
    def stream_limit(self) -> int:
        """``max_streams``, or what the descriptor limit allows."""
        if self.max_streams is not None:
            return self.max_streams
        try:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):
            return 10_000
        if soft == resource.RLIM_INFINITY:
            return 1_000_000
        return max(1, soft - 256)

    @property
    def demo(self) -> bool:
        """No secret: identities come from query parameters and anyone may produce."""
        return self.jwt_secret is None

    def replace(self, **changes: Any) -> WebConfig:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(WebConfig)}
#: Names that may come from outside (all but the internal range).
SETTINGS = tuple(name for name in _FIELDS if name != "shutdown_retry_ms")


def _coerce(name: str, value: Any) -> Any:
    kind = str(_FIELDS[name].type)
    try:
        if isinstance(value, str):
            if "None" in kind and value.strip().lower() in ("", "none", "null"):
                return None
            if kind.startswith("float"):
                return float(value)
            if kind.startswith("int"):
                return int(value)
            if kind.startswith("bool"):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return value
        if kind.startswith("float") and isinstance(value, int | float) \
                and not isinstance(value, bool):
            return float(value)
        if kind.startswith("int") and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind.startswith("bool") and isinstance(value, bool):
            return value
        if kind.startswith("str") and isinstance(value, str):
            return value
    except ValueError:
        pass
    raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}")


def from_mapping(values: Mapping[str, Any], base: WebConfig | None = None,
                 source: str = "settings") -> WebConfig:
    """Apply ``values`` (names as in ``WebConfig``; ``-`` and ``_`` alike) over ``base``."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_").lower()
        if name not in SETTINGS:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        changes[name] = _coerce(name, value)
    try:
        return (base or WebConfig()).replace(**changes)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def from_toml(path: str | os.PathLike[str], base: WebConfig | None = None) -> WebConfig:
    """Settings from a TOML file: top-level keys, or a ``[queuetasks]`` table."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    table = data.get("queuetasks", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [queuetasks] must be a table")
    return from_mapping(table, base, source=str(path))


def from_env(env: Mapping[str, str], base: WebConfig | None = None) -> WebConfig:
    """Settings from ``QUEUETASKS_<NAME>`` variables (``QUEUETASKS_CONFIG`` names a TOML file)."""
    values = {
        key[len(ENV_PREFIX):].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG"
    }
    return from_mapping(values, base, source="environment")


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         toml_path: str | None = None) -> WebConfig:
    """The full chain: defaults < TOML (``toml_path`` or ``QUEUETASKS_CONFIG``) < env < flags.
    ``flags`` holds only the options actually given. Raises ``ConfigError``."""
    env = os.environ if env is None else env
    config = WebConfig()
    toml_path = toml_path or env.get(ENV_PREFIX + "CONFIG") or None
    if toml_path:
        config = from_toml(toml_path, config)
    config = from_env(env, config)
    if flags:
        config = from_mapping(flags, config, source="command line")
    return config
