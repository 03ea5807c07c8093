"""Event subscriptions: an async iterator per observer, cut off rather than ever slowing us."""

from __future__ import annotations

from collections.abc import Callable

import trio

from ._effects import EngineEvent
from ._errors import QueueTasksError


class EventsLost(QueueTasksError):
    """The subscriber fell too far behind; events after the last one it read were not kept."""


class EventSubscription:
    """``async for event in engine.subscribe(): ...``; ``close()`` (or ``with``) to stop."""

    __slots__ = ("_lost", "_receive", "_send", "_unsubscribe")

    def __init__(self, buffer: int, unsubscribe: Callable[[EventSubscription], None]) -> None:
        self._send, self._receive = trio.open_memory_channel[EngineEvent](buffer)
        self._unsubscribe = unsubscribe
        self._lost = False

    def _publish(self, event: EngineEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._lost = True
            self.close()

    def close(self) -> None:
        """Stop receiving; iteration ends after the events already buffered."""
        if not self._send._closed:
            self._send.close()
            self._unsubscribe(self)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> EngineEvent:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._lost:
                raise EventsLost("event subscriber fell behind and was cut off") from None
            raise StopAsyncIteration from None

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
