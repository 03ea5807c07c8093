"""Small fakes and probes shared by the runtime tests (no mocks: a fake host, plain lists)."""

from __future__ import annotations

import trio
from queuetasks.engine import (
    Engine,
    EngineEvent,
    EventKind,
    EventSubscription,
    Hooks,
    Message,
    Operator,
    OperatorId,
    TabStream,
    TaskInfo,
)

#: Generous virtual-time limit for one test (autojump makes it cost nothing).
LIMIT = 1_000.0


def op(name: str, grade: int = 0) -> Operator:
    return Operator(OperatorId(name), grade)


async def poll(stream: TabStream) -> Message | None:
    """The next message already in the stream, or None; no virtual time passes. Raises
    ``trio.EndOfChannel`` when the stream ended and nothing is left."""
    return await stream.receive(idle_after=0)


async def next_event(sub: EventSubscription) -> EngineEvent:
    """The subscription's next event, waiting (in virtual time) until it happens."""
    return await anext(sub)


def record(engine: Engine) -> list[EngineEvent]:
    """Every event from now on, appended synchronously (for looking without awaiting)."""
    seen: list[EngineEvent] = []
    engine.add_listener(seen.append)
    return seen


def kinds(events: list[EngineEvent]) -> list[tuple[EventKind, str, str | None]]:
    return [(e.kind, e.task_id, e.operator_id) for e in events]


class FakeHost(Hooks):
    """The host as plain state the tests flip: per-operator gates, delays and failures.

    ``hold_*`` operators block in the hook until the gate opens; ``slow_*`` ones sleep that long
    (virtual time); ``fail_*`` ones raise ``RuntimeError``.
    """

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.hold_wait: set[str] = set()
        self.hold_confirm: set[str] = set()
        self.slow_wait: dict[str, float] = {}
        self.slow_confirm: dict[str, float] = {}
        self.fail_wait: set[str] = set()
        self.fail_confirm: set[str] = set()
        self.waits: list[str] = []
        self.confirms: list[tuple[str, str]] = []
        self.confirmed: list[tuple[str, str]] = []

    async def can_wait(self, operator: Operator) -> bool:
        self.waits.append(operator.id)
        if operator.id in self.fail_wait:
            raise RuntimeError(f"host database down for {operator.id}")
        if operator.id in self.hold_wait:
            await self.gate.wait()
        if operator.id in self.slow_wait:
            await trio.sleep(self.slow_wait[operator.id])
        await trio.lowlevel.checkpoint()
        return True

    async def confirm_assignment(self, task: TaskInfo, operator: Operator) -> bool:
        self.confirms.append((task.id, operator.id))
        if operator.id in self.fail_confirm:
            raise RuntimeError(f"host database down for {operator.id}")
        if operator.id in self.hold_confirm:
            await self.gate.wait()
        if operator.id in self.slow_confirm:
            await trio.sleep(self.slow_confirm[operator.id])
        await trio.lowlevel.checkpoint()
        self.confirmed.append((task.id, operator.id))
        return True
