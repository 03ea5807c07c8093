"""JWTs for load clients (HS256, as the standalone server expects; see docs/PROTOCOL.md)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt

BASE_PATH = "/api/v1/QueueTasks"


def operator_token(
    secret: str, operator_id: str, *, grade: int = 0, pools: list[str] | None = None
) -> str:
    claims: dict[str, Any] = {"sub": operator_id, "grade": grade}
    if pools is not None:
        claims["pools"] = pools
    return jwt.encode(claims, secret, algorithm="HS256")


def producer_token(secret: str, name: str = "loadtest-producer") -> str:
    return jwt.encode({"sub": name, "role": "producer"}, secret, algorithm="HS256")


def unverified_subject(token: str) -> str | None:
    """The ``sub`` claim without checking the signature (baseline servers only)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        sub = json.loads(base64.urlsafe_b64decode(payload)).get("sub")
    except (IndexError, ValueError):
        return None
    return sub if isinstance(sub, str) else None
