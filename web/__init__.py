"""QueueTasks web layer: the seed's HTTP API and SSE stream on Quart-Trio, and a server.

Mount it with ``QueueTasks(app, operator_provider=..., hooks=...)``; run it standalone with
``queuetasks serve`` (or ``python -m queuetasks.web serve``).
"""

from ._auth import Auth, DemoAuth, HostAuth, JwtAuth, make_operator, make_token
from ._config import ConfigError, WebConfig
from ._errors import (
    ERROR_CODE_HOST_REFUSED,
    ERROR_TABLE,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    Unauthenticated,
    WebError,
)
from ._ext import QueueTasks

__all__ = [
    "ERROR_CODE_HOST_REFUSED",
    "ERROR_TABLE",
    "Auth",
    "BadRequest",
    "BodyTooLarge",
    "ConfigError",
    "DemoAuth",
    "Forbidden",
    "HostAuth",
    "JwtAuth",
    "QueueTasks",
    "Unauthenticated",
    "WebConfig",
    "WebError",
    "make_operator",
    "make_token",
]
