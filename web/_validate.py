"""Checks of untrusted input: ids, JSON bodies. Each failure is a ``BadRequest`` naming it."""

from __future__ import annotations

import json
import math
from typing import Any

from quart import Request

from ._errors import BadRequest, BodyTooLarge, UnsupportedMediaType

MAX_ID_LENGTH = 128


def check_id(value: str, what: str = "task id") -> str:
    """A task or operator id: 1 to 128 characters, no control characters."""
    if not value:
        raise BadRequest(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise BadRequest(f"{what} is longer than {MAX_ID_LENGTH} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise BadRequest(f"{what} contains control characters")
    if value != value.strip():
        raise BadRequest(f"{what} has leading or trailing spaces")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_json_head(mimetype: str | None, content_length: int | None, max_body: int) -> None:
    """Refuse a body before reading it: 415 for a non-JSON content type, 413 for a declared
    length above ``max_body``."""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {mimetype[:80]}")
    if content_length is not None and content_length > max_body:
        raise BodyTooLarge(f"the body has {content_length} bytes, the limit is {max_body}")


def add_chunk(data: bytearray, chunk: bytes, max_body: int) -> None:
    """Append a body chunk; 413 as soon as the body grows past ``max_body``."""
    data += chunk
    if len(data) > max_body:
        raise BodyTooLarge(f"the body is larger than the limit of {max_body} bytes")


def parse_json_object(data: bytes) -> dict[str, Any]:
    """A whole body as a JSON object (400 if empty, not JSON, or not an object)."""
    if not data.strip():
        raise BadRequest("a JSON object body is required")
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


async def read_json_object(request: Request, max_body: int) -> dict[str, Any]:
    """The body as a JSON object, read up to ``max_body`` bytes (413 beyond, 400 if not a JSON
    object, 415 for a non-JSON content type). Blocks while the body arrives."""
    check_json_head(request.mimetype, request.content_length, max_body)
    data = bytearray()
    async for chunk in request.body:
        add_chunk(data, chunk, max_body)
    return parse_json_object(bytes(data))


def get_field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any,
              *, nullable: bool = False) -> Any:
    """``body[name]`` of the given JSON type (bool is never an int), or ``default``."""
    if name not in body:
        return default
    value = body[name]
    if value is None and nullable:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest(f"{name} must be {_names(kinds)}")
    if not isinstance(value, kinds):
        raise BadRequest(f"{name} must be {_names(kinds)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"{name} must be finite")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
