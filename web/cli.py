"""``queuetasks serve`` (and ``python -m queuetasks.web serve``); ``queuetasks token``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ._auth import make_token
from ._config import ENV_PREFIX, ConfigError, load

# flag -> (setting, type, help)
_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--host", "host", str, "address to listen on (default 127.0.0.1)"),
    ("--port", "port", int, "port (default 8000; 0 picks a free one)"),
    ("--base-path", "base_path", str, "API prefix (default /api/v1/QueueTasks)"),
    ("--offer-timeout", "offer_timeout", float, "seconds to answer an offer (default 40)"),
    ("--keepalive-interval", "keepalive_interval", float,
     "seconds between keep-alives (default 25)"),
    ("--disconnect-grace", "disconnect_grace", float,
     "seconds an offer survives without an open tab (default: the offer timeout)"),
    ("--cors-origin", "cors_origin", str, "Access-Control-Allow-Origin (default *)"),
    ("--secret", "jwt_secret", str, "HS256 JWT secret; without one the server is a demo"),
    ("--max-streams", "max_streams", int,
     "open streams before 503 (default: the descriptor limit minus 256)"),
    ("--hook-timeout", "hook_timeout", float, "limit for host hooks (default 10)"),
    ("--graceful-timeout", "graceful_timeout", float,
     "seconds for requests in flight on shutdown (default 5)"),
    ("--backlog", "backlog", int, "listen backlog (default 4096)"),
    ("--log-level", "log_level", str, "debug, info, warning (default info)"),
    ("--gc-full-interval", "gc_full_interval", float,
     "seconds between full garbage collections (default 600)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="queuetasks", description="QueueTasks: hand tasks to operators waiting on SSE.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the standalone server",
        description=f"Options also come from {ENV_PREFIX}<NAME> variables (e.g. "
                    f"{ENV_PREFIX}JWT_SECRET, {ENV_PREFIX}OFFER_TIMEOUT) and a TOML file "
                    f"(--config or {ENV_PREFIX}CONFIG); flags win over env over TOML.")
    serve.add_argument("--config", metavar="FILE", help="TOML settings file")
    for flag, dest, kind, text in _OPTIONS:
        serve.add_argument(flag, dest=dest, type=kind, help=text, default=argparse.SUPPRESS)
    serve.add_argument("--no-gc-tuning", dest="gc_tuning", action="store_false",
                       default=argparse.SUPPRESS, help="leave Python's GC settings alone")
    token = commands.add_parser("token", help="print an HS256 JWT for an operator or producer")
    token.add_argument("sub", help="operator id (or producer name)")
    token.add_argument("--secret", required=True)
    token.add_argument("--grade", type=int)
    token.add_argument("--pools", help="comma separated")
    token.add_argument("--producer", action="store_true")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        pools = [p for p in args.pools.split(",") if p] if args.pools else None
        print(make_token(args.secret, args.sub, grade=args.grade, pools=pools,
                         role="producer" if args.producer else None, ttl=args.ttl))
        return 0
    flags: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in ("command",
                                                                              "config")}
    try:
        config = load(flags, toml_path=args.config)
    except ConfigError as exc:
        print(f"queuetasks: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ._server import run

    try:
        run(config)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
