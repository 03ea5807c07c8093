"""The ``wait-sse`` body: one small object per connection, no task of its own.

Quart iterates the body and awaits each write before asking for the next chunk, so when
``__anext__`` runs again the previous chunk is in the socket: that is when a pushed task counts
as delivered. A client that goes away makes quart-trio cancel the iteration (hypercorn reads
while it writes and reports the disconnect at once); the stream is closed by ``aclose`` and, in
case the body was never iterated, by the ASGI wrapper (``_ext``), both idempotent.
"""

from __future__ import annotations

import json
import random
from typing import Any

import trio
from queuetasks.engine import CloseReason, EndedMessage, Message, OfferMessage, TabStream

HEADERS = {
    "Content-Type": "text/event-stream; charset=UTF-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

KEEPALIVE = b'event: connection\ndata: "keep-alive"\n\n'


def hello(retry_ms: int) -> bytes:
    """What every stream writes at once: the reconnect delay and a ``connection`` event."""
    return f'retry: {retry_ms}\nevent: connection\ndata: "connected"\n\n'.encode()


def encode(message: Message, now: float) -> bytes:
    """One ``task`` or ``offer-ended`` event."""
    if isinstance(message, OfferMessage):
        remaining = (None if message.deadline is None
                     else round(max(0.0, message.deadline - now), 3))
        data: dict[str, Any] = {
            "taskId": message.task_id,
            "assigned": message.assigned,
            "offerId": message.offer_id,
            "remainingSeconds": remaining,
            "payload": message.payload,
        }
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)
        return f"id: {message.offer_id}\nevent: task\ndata: {text}\n\n".encode()
    assert isinstance(message, EndedMessage)
    text = json.dumps({"taskId": message.task_id, "reason": message.reason.value},
                      separators=(",", ":"), ensure_ascii=False)
    return f"event: offer-ended\ndata: {text}\n\n".encode()


def jittered_retry(low_ms: int, high_ms: int) -> bytes:
    """Tell the client to come back after a random delay (shutdown: spread the reconnects)."""
    return f"retry: {random.randint(low_ms, high_ms)}\n\n".encode()


class Drain:
    """Lets the server end every stream at once (graceful shutdown). Holds the cancel scope of
    each ``receive`` in progress; ``start()`` cancels them all and refuses to wait again."""

    __slots__ = ("draining", "live", "retry_range")

    def __init__(self, retry_range: tuple[int, int]) -> None:
        self.draining = False
        self.live: set[trio.CancelScope] = set()
        self.retry_range = retry_range

    def start(self) -> None:
        self.draining = True
        for scope in self.live:
            scope.cancel()

    def retry(self) -> bytes:
        return jittered_retry(*self.retry_range)


class SseBody:
    """The async-iterable body of one ``wait-sse`` response. Closing it closes the tab."""

    __slots__ = ("_drain", "_hello_retry", "_idle", "_last", "stream")

    def __init__(self, stream: TabStream, keepalive_interval: float, drain: Drain,
                 retry_ms: int) -> None:
        self.stream: TabStream | None = stream
        self._idle = keepalive_interval
        self._drain = drain
        self._last: Message | None = None
        self._hello_retry = retry_ms

    def __aiter__(self) -> SseBody:
        return self

    async def __anext__(self) -> bytes:
        stream = self.stream
        if stream is None:
            raise StopAsyncIteration
        if self._hello_retry:
            retry_ms, self._hello_retry = self._hello_retry, 0
            await trio.lowlevel.checkpoint()
            return hello(retry_ms)
        if self._last is not None:
            # The previous chunk was written: a pushed task is now delivered.
            last, self._last = self._last, None
            stream.delivered(last)
        drain = self._drain
        while True:
            if drain.draining:
                return self._finish(drain.retry())
            scope = trio.CancelScope()
            drain.live.add(scope)
            try:
                with scope:
                    message = await stream.receive(idle_after=self._idle)
            except trio.EndOfChannel:
                if stream.close_reason is CloseReason.SHUTDOWN:
                    return self._finish(drain.retry())
                self._close()
                raise StopAsyncIteration from None
            finally:
                drain.live.discard(scope)
            if scope.cancelled_caught:
                continue  # draining: the loop's first check ends the stream
            if message is None:
                return KEEPALIVE
            if isinstance(message, OfferMessage) and message.assigned:
                self._last = message
            return encode(message, trio.current_time())

    def _finish(self, last_chunk: bytes) -> bytes:
        """Close the tab now; ``last_chunk`` is the stream's final write."""
        self._close()
        return last_chunk

    def _close(self) -> None:
        stream = self.stream
        if stream is not None:
            self.stream = None
            stream.close()

    async def aclose(self) -> None:
        """Quart calls this when the response ends (also when cancelled); never blocks."""
        self._close()
