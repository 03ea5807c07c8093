"""One operator tab's stream, as the web layer sees it."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from ._effects import Message, OfferMessage
from ._types import CloseReason, Operator, TabId

if TYPE_CHECKING:
    from ._runtime import Engine


class TabStream:
    """The messages for one open tab: its offer (or pushed task), then how the offer ended.

    Get one from ``Engine.open_stream``; read it with ``receive``; and ``close()`` it (or use it as
    a ``with`` block) when the connection goes away, which is what tells the engine the tab is
    gone. ``close()`` is synchronous and idempotent, so a plain ``finally`` is enough after a
    disconnect cancelled the reader.

    The engine never waits for a reader: messages go into this small buffer (at most an offer and
    its end, since the stream ends after the end), so a slow socket delays nobody else.
    """

    __slots__ = (
        "_ended",
        "_engine",
        "_messages",
        "_push",
        "_wake",
        "close_reason",
        "operator",
        "tab",
    )

    def __init__(self, engine: Engine, tab: TabId, operator: Operator) -> None:
        self._engine = engine
        self.tab = tab
        self.operator = operator
        self._messages: deque[Message] = deque()
        self._wake: trio.Event | None = None
        self._ended = False
        self._push: OfferMessage | None = None
        #: Why the engine ended this stream (None while it is open or if the client left).
        self.close_reason: CloseReason | None = None

    def __repr__(self) -> str:
        state = "open" if not self._ended else f"ended ({self.close_reason})"
        return f"<TabStream tab={self.tab} operator={self.operator.id} {state}>"

    @property
    def ended(self) -> bool:
        """True once the engine ended the stream and every message was read."""
        return self._ended and not self._messages

    async def receive(self, idle_after: float | None = None) -> Message | None:
        """The next message; blocks until one comes, or returns None after ``idle_after`` seconds
        (time for a keep-alive). Raises ``trio.EndOfChannel`` once the engine ended the stream and
        nothing is left. Cancelling it loses nothing."""
        while True:
            if self._messages:
                await trio.lowlevel.checkpoint()
                return self._messages.popleft()
            if self._ended:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            self._wake = wake = trio.Event()
            if idle_after is None:
                await wake.wait()
            else:
                with trio.move_on_after(idle_after):
                    await wake.wait()
                if not wake.is_set():
                    return None

    def delivered(self, message: Message) -> None:
        """Say that ``message`` was written to the client. Needed for pushed tasks (assigned
        true): a push counts as delivered only then, and goes to the next tab otherwise."""
        if self._push is not None and message is self._push:
            self._push = None
            self._engine._push_sent(self.operator.id, message.offer_id, True)

    def close(self) -> None:
        """The tab is gone (or done): tell the engine. Synchronous, idempotent."""
        if self._push is not None:
            push, self._push = self._push, None
            self._engine._push_sent(self.operator.id, push.offer_id, False)
        if not self._ended:
            self._ended = True
            self._engine._tab_closed(self)
        self._messages.clear()
        self._wakeup()

    def __enter__(self) -> TabStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- called by the engine

    def _put(self, message: Message, close: CloseReason | None) -> None:
        if self._ended:
            return
        self._messages.append(message)
        if isinstance(message, OfferMessage) and message.assigned:
            self._push = message
        if close is not None:
            self._ended = True
            self.close_reason = close
        self._wakeup()

    def _end(self, reason: CloseReason) -> None:
        if not self._ended:
            self._ended = True
            self.close_reason = reason
            self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None
