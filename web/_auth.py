"""Who is calling: the host's operator provider, the standalone server's JWTs, the demo mode.

An ``Auth`` answers three questions about a request, each raising ``Unauthenticated`` (401) or
``Forbidden`` (403): which operator is it, may it produce (add, push, cancel tasks, read
statistics), and may it read the queue (``queue-operators``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Protocol

import jwt
from quart import Request
from queuetasks.engine import DEFAULT_POOL, InvalidInput, Operator, OperatorId

from ._errors import BadRequest, Forbidden, Unauthenticated
from ._validate import MAX_ID_LENGTH, check_id

OperatorProvider = Callable[[Request], Awaitable[Operator]]
RequestCheck = Callable[[Request], Awaitable[None]]

TOKEN_PARAM = "access_token"
MAX_POOLS = 64


class RequestParts(Protocol):
    """What the server's own identities read of a request: a Quart ``Request`` has these, and
    so does the lean path's ``ScopeRequest`` (``_fast``), built from the ASGI scope alone."""

    @property
    def headers(self) -> Any: ...

    @property
    def args(self) -> Any: ...

    @property
    def cookies(self) -> Any: ...


class Auth(Protocol):
    """What the routes ask. Each method blocks only as long as the host's code does.

    An ``Auth`` whose class sets ``lean = True`` reads nothing but ``headers``, ``args`` and
    ``cookies`` (``RequestParts``); its hot routes (wait-sse, assign, reject, POST tasks) then
    run on the lean ASGI path without Quart's request objects."""

    async def operator(self, request: Request) -> Operator:
        """The calling operator, or ``Unauthenticated``."""
        ...

    async def producer(self, request: Request) -> None:
        """Return if the caller may use the producer API; else ``Unauthenticated``/``Forbidden``."""
        ...

    async def supervisor(self, request: Request) -> None:
        """Return if the caller may read ``queue-operators``."""
        ...


def make_operator(op_id: Any, grade: Any = 0, pools: Any = None) -> Operator:
    """An ``Operator`` from untrusted values; ``BadRequest`` names what is wrong."""
    if not isinstance(op_id, str):
        raise BadRequest("operator id must be a string")
    check_id(op_id, "operator id")
    if isinstance(grade, bool) or not isinstance(grade, int):
        raise BadRequest(f"operator {op_id}: grade must be an integer")
    if pools is None:
        pools = [DEFAULT_POOL]
    if (not isinstance(pools, list | tuple) or not pools or len(pools) > MAX_POOLS
            or not all(isinstance(p, str) and p and len(p) <= MAX_ID_LENGTH for p in pools)):
        raise BadRequest(f"operator {op_id}: pools must be a non-empty list of names")
    try:
        return Operator(OperatorId(op_id), grade, frozenset(pools))
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None


class HostAuth:
    """Embedding: the host's own ``operator_provider``; producers and supervisors are checked
    by the host's optional callables (producer API refused, queue open to operators, if not
    given)."""

    def __init__(self, operator_provider: OperatorProvider, *,
                 producer_check: RequestCheck | None = None,
                 supervisor_check: RequestCheck | None = None) -> None:
        self._provider = operator_provider
        self._producer = producer_check
        self._supervisor = supervisor_check

    async def operator(self, request: Request) -> Operator:
        operator = await self._provider(request)
        if not isinstance(operator, Operator):
            raise Unauthenticated("the operator provider returned no operator")
        return operator

    async def producer(self, request: Request) -> None:
        if self._producer is None:
            raise Forbidden("the producer api is not enabled by the host")
        await self._producer(request)

    async def supervisor(self, request: Request) -> None:
        if self._supervisor is None:
            await self.operator(request)
        else:
            await self._supervisor(request)


def bearer_token(request: RequestParts) -> str | None:
    """The token from ``Authorization: Bearer``, the ``access_token`` query parameter, or the
    ``access_token`` cookie (EventSource cannot set headers)."""
    header: str | None = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the authorization header is not a bearer token")
        return value.strip()
    token: str | None = request.args.get(TOKEN_PARAM) or request.cookies.get(TOKEN_PARAM)
    return token or None


class JwtAuth:
    """HS256 JWTs: ``sub`` the operator id, ``grade`` (int, 0), ``pools`` (list, ["default"]),
    ``role: "producer"`` for producers. Any valid token may read the queue."""

    lean: ClassVar[bool] = True

    def __init__(self, secret: str, *, leeway: float = 5.0, cache_size: int = 50_000) -> None:
        self._secret = secret
        self._leeway = leeway
        # Operators send the same token on every reconnect, assign and reject: a token whose
        # signature was verified once maps to its claims here (the same string always verifies
        # the same way), and only its expiry is checked again on each use.
        self._cache: dict[str, tuple[Mapping[str, Any], float | None]] = {}
        self._cache_size = cache_size

    def claims(self, request: RequestParts) -> Mapping[str, Any]:
        token = bearer_token(request)
        if token is None:
            raise Unauthenticated("no bearer token, access_token parameter or cookie")
        hit = self._cache.get(token)
        if hit is not None:
            claims, expires_at = hit
            if expires_at is None or time.time() <= expires_at + self._leeway:
                return claims
            del self._cache[token]
            raise Unauthenticated("the token has expired")
        claims = self._decode(token)
        exp = claims.get("exp")
        if self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # the oldest entry
            self._cache[token] = (claims, float(exp) if isinstance(exp, int | float) else None)
        return claims

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], leeway=self._leeway,
                                options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is invalid: {exc}") from None
        if not isinstance(claims, dict):
            raise Unauthenticated("the token is invalid")
        return claims

    async def operator(self, request: RequestParts) -> Operator:
        claims = self.claims(request)
        try:
            return make_operator(claims.get("sub"), claims.get("grade", 0), claims.get("pools"))
        except BadRequest as exc:
            raise Unauthenticated(f"the token's claims are invalid: {exc}") from None

    async def producer(self, request: RequestParts) -> None:
        claims = self.claims(request)
        if claims.get("role") != "producer":
            raise Forbidden(f"{claims.get('sub')} is not a producer")

    async def supervisor(self, request: RequestParts) -> None:
        self.claims(request)


class DemoAuth:
    """No secret: the operator is named by the query parameters ``operator``, ``grade``,
    ``pools`` (comma separated), and everyone may produce and supervise. Never for production."""

    lean: ClassVar[bool] = True

    async def operator(self, request: RequestParts) -> Operator:
        op_id = request.args.get("operator")
        if not op_id:
            raise Unauthenticated("demo mode: name the operator with ?operator=<id>")
        raw_grade = request.args.get("grade", "0")
        try:
            grade = int(raw_grade)
        except ValueError:
            raise BadRequest(f"grade {raw_grade[:40]!r} is not an integer") from None
        raw_pools = request.args.get("pools")
        pools = [p.strip() for p in raw_pools.split(",") if p.strip()] if raw_pools else None
        return make_operator(op_id, grade, pools)

    async def producer(self, request: RequestParts) -> None:
        return None

    async def supervisor(self, request: RequestParts) -> None:
        return None


def make_token(secret: str, sub: str, *, grade: int | None = None,
               pools: list[str] | None = None, role: str | None = None,
               ttl: float | None = 3600.0) -> str:
    """An HS256 token for tests, scripts and the load tests."""
    claims: dict[str, Any] = {"sub": sub}
    if grade is not None:
        claims["grade"] = grade
    if pools is not None:
        claims["pools"] = pools
    if role is not None:
        claims["role"] = role
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    return jwt.encode(claims, secret, algorithm="HS256")
