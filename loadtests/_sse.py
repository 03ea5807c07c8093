"""A pure, incremental ``text/event-stream`` parser (no I/O: shared by trio and gevent clients)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None


class SseParser:
    """Incremental text/event-stream parser (WHATWG rules, minus BOM handling)."""

    __slots__ = ("comments", "data", "event", "events", "id", "partial")

    def __init__(self) -> None:
        self.partial = b""
        self.event = ""
        self.data: list[str] = []
        self.id: str | None = None
        self.events: deque[SseEvent] = deque()
        self.comments = 0

    def feed(self, data: bytes) -> None:
        buf = self.partial + data
        lines = buf.split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self.data or self.event:
                    self.events.append(
                        SseEvent(self.event or "message", "\n".join(self.data), self.id)
                    )
                self.event = ""
                self.data = []
                continue
            if line[:1] == b":":
                self.comments += 1
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self.data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self.event = value.decode("utf-8", "replace")
            elif name == b"id":
                self.id = value.decode("utf-8", "replace")
