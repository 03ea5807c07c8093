"""OpenAPI for every route, through quart-schema's ``/openapi.json`` and Swagger UI ``/docs``.

quart-schema derives schemas from pydantic or msgspec models, which this project does not
depend on; so the schemas are written here as JSON Schema, attached to each view function by
``doc``, and merged in by a provider subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart import Quart
from quart_schema import QuartSchema
from quart_schema.openapi import OpenAPIProvider

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "_queuetasks_openapi"

_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Envelope": {
        "type": "object",
        "required": ["success", "error", "errorCode", "result"],
        "properties": {
            "success": {"type": "boolean"},
            "error": _NULLABLE_STR,
            "errorCode": {"type": "integer", "description": "910: the host refused"},
            "result": {},
        },
    },
    "TakeFree": {"type": "object", "properties": {"taskId": _NULLABLE_STR}},
    "QueueOperators": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "operatorId": {"type": "string"},
                "since": {"type": "string", "format": "date-time"},
                "status": {"enum": ["waiting", "offered", "confirming", "receiving-push",
                                    "away"]},
                "tabs": {"type": "integer"},
                "taskId": _NULLABLE_STR,
            },
        },
    },
    "NewTask": {
        "type": "object",
        "required": ["taskId"],
        "additionalProperties": False,
        "properties": {
            "taskId": {"type": "string", "minLength": 1, "maxLength": 128},
            "priority": {"type": "integer", "default": 0},
            "pool": {"type": "string", "default": "default"},
            "minGrade": {"type": "integer", "default": 0},
            "operatorId": {**_NULLABLE_STR, "description": "set: push, already assigned"},
            "ttl": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "payload": {},
        },
    },
    "TaskState": {
        "type": "object",
        "properties": {
            "taskId": {"type": "string"},
            "state": {"enum": ["pending", "offered", "assigned", "cancelled"]},
        },
    },
    "Task": {
        "type": "object",
        "properties": {
            "taskId": {"type": "string"},
            "state": {"enum": ["pending", "offered", "assigned", "cancelled"]},
            "operatorId": _NULLABLE_STR,
            "priority": {"type": "integer"},
            "pool": {"type": "string"},
            "minGrade": {"type": "integer"},
            "pushed": {"type": "boolean"},
            "endReason": _NULLABLE_STR,
            "payload": {},
        },
    },
    "Stats": {"type": "object", "additionalProperties": {"type": "integer"}},
}

_REASONS = {200: "OK", 201: "Created", 204: "can_wait is false", 400: "Bad request",
            401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict",
            413: "Body too large", 415: "Not JSON", 503: "Overloaded or not running"}


def doc(tag: str, result: str | None, *, errors: tuple[int, ...] = (), body: str | None = None,
        status: int = 200, sse: bool = False) -> Callable[[F], F]:
    """Describe a route: its tag, result schema, request body schema and error statuses."""

    def envelope_of(schema: dict[str, Any]) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Envelope"},
                      {"type": "object", "properties": {"result": schema}}]}}}}

    responses: dict[str, Any] = {}
    if sse:
        responses["200"] = {"description": "text/event-stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}}
        responses["204"] = {"description": _REASONS[204]}
    else:
        schema = {"$ref": f"#/components/schemas/{result}"} if result else {"type": "null"}
        responses[str(status)] = {"description": _REASONS[status], **envelope_of(schema)}
    for code in errors:
        responses[str(code)] = {"description": _REASONS.get(code, "Error"),
                                **envelope_of({"type": "null"})}
    operation: dict[str, Any] = {"tags": [tag], "responses": responses,
                                 "security": [{"bearer": []}, {"access_token": []}]}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}

    def decorate(func: F) -> F:
        setattr(func, ATTRIBUTE, operation)
        return func

    return decorate


class _Mixin(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        schema = super().schema()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(SCHEMAS)
        components.setdefault("securitySchemes", {}).update({
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "access_token": {"type": "apiKey", "in": "query", "name": "access_token"},
        })
        return schema

    def build_paths(self, rule: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        extra = getattr(func, ATTRIBUTE, None)
        if extra is not None:
            for operations in paths.values():
                for operation in operations.values():
                    operation.update(extra)
        return paths, components


def install(app: Quart, title: str = "QueueTasks") -> None:
    """Use the app's QuartSchema if it has one, else add one; either way our provider."""
    schema_ext = app.extensions.get("QUART_SCHEMA")
    if schema_ext is None:
        schema_ext = QuartSchema(app, info={"title": title, "version": "1"})
    base = type(schema_ext.openapi_provider)
    if not issubclass(base, _Mixin):
        provider = type("QueueTasksOpenAPIProvider", (_Mixin, base), {})
        schema_ext.openapi_provider = provider(app, schema_ext)
