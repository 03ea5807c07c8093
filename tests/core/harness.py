"""A fake driver for the sans-IO core: it plays the runtime's part (tabs, confirmations, pushes)
and checks every effect against what it knows, so tests read as plain sequences of inputs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from queuetasks.engine import (
    Close,
    Confirm,
    Core,
    CoreConfig,
    Effect,
    EndedMessage,
    EngineEvent,
    Notify,
    OfferMessage,
    Operator,
    OperatorId,
    Send,
    TabId,
    TaskId,
    TaskSpec,
)


@dataclass
class Tab:
    id: TabId
    operator: OperatorId
    messages: list[OfferMessage | EndedMessage] = field(default_factory=list)
    open: bool = True


class Driver:
    """Feeds inputs to a ``Core`` and keeps the runtime's view of tabs, confirmations, pushes."""

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.core = Core(config or CoreConfig())
        self.now = 0.0
        self.tabs: dict[TabId, Tab] = {}
        self.next_tab = 0
        self.confirms: list[Confirm] = []
        self.pushes_in_flight: list[tuple[TabId, OfferMessage]] = []
        self.events: list[EngineEvent] = []
        self.step_effects: list[Effect] = []

    # ---- inputs

    def open(self, operator: str | Operator, grade: int = 0,
             pools: Iterable[str] = ("default",)) -> Tab:
        if isinstance(operator, str):
            operator = Operator(OperatorId(operator), grade, frozenset(pools))
        self.next_tab += 1
        tab = Tab(TabId(self.next_tab), operator.id)
        self.tabs[tab.id] = tab
        self.run(self.core.open_tab(operator, tab.id, self.now))
        return tab

    def close(self, tab: Tab) -> None:
        """The client went away (the runtime reports it whether or not the core closed it)."""
        was_open = tab.open
        tab.open = False
        if was_open:
            self.run(self.core.close_tab(tab.id, self.now))
        for item in [p for p in self.pushes_in_flight if p[0] == tab.id]:
            self.pushes_in_flight.remove(item)
            self.run(self.core.push_sent(tab.operator, item[1].offer_id, False, self.now))

    def add(self, task_id: str, **kw: object) -> None:
        self.run(self.core.add_task(TaskSpec(TaskId(task_id), **kw), self.now))  # type: ignore[arg-type]

    def push(self, task_id: str, operator: str) -> None:
        self.run(self.core.push_task(TaskId(task_id), OperatorId(operator), self.now))

    def cancel(self, task_id: str) -> None:
        self.run(self.core.cancel_task(TaskId(task_id), self.now))

    def assign(self, operator: str, task_id: str, ok: bool = True) -> None:
        self.run(self.core.assign(OperatorId(operator), TaskId(task_id), self.now))
        self.answer(operator, task_id, ok)

    def answer(self, operator: str, task_id: str, ok: bool) -> None:
        confirm = next(c for c in self.confirms
                       if c.operator_id == operator and c.task_id == task_id)
        self.confirms.remove(confirm)
        self.run(self.core.confirm(OperatorId(operator), TaskId(task_id), ok, self.now))

    def reject(self, operator: str, task_id: str) -> None:
        self.run(self.core.reject(OperatorId(operator), TaskId(task_id), self.now))

    def take_free(self, operator: str, grade: int = 0, pools: Iterable[str] = ("default",),
                  ok: bool = True) -> str | None:
        op = Operator(OperatorId(operator), grade, frozenset(pools))
        task_id, fx = self.core.take_free(op, self.now)
        self.run(fx)
        if task_id is not None:
            self.answer(operator, task_id, ok)
        return task_id

    def exit(self, operator: str) -> None:
        self.run(self.core.exit(OperatorId(operator), self.now))

    def deliver(self, ok: bool = True) -> None:
        """Every tab holding a pushed task reports whether it wrote it."""
        while self.pushes_in_flight:
            tab_id, message = self.pushes_in_flight.pop(0)
            self.run(self.core.push_sent(self.tabs[tab_id].operator, message.offer_id, ok,
                                         self.now))

    def advance(self, dt: float) -> None:
        self.now += dt
        self.run(self.core.advance(self.now))

    # ---- effects

    def run(self, effects: list[Effect]) -> None:
        self.step_effects = list(effects)
        for effect in effects:
            if isinstance(effect, Send):
                for tab_id in effect.tabs:
                    tab = self.tabs[tab_id]
                    assert tab.open, f"{effect} sent to closed tab {tab_id}"
                    tab.messages.append(effect.message)
                    if isinstance(effect.message, OfferMessage) and effect.message.assigned:
                        self.pushes_in_flight.append((tab_id, effect.message))
                    if effect.close is not None:
                        tab.open = False
            elif isinstance(effect, Close):
                for tab_id in effect.tabs:
                    assert self.tabs[tab_id].open
                    self.tabs[tab_id].open = False
            elif isinstance(effect, Confirm):
                self.confirms.append(effect)
            elif isinstance(effect, Notify):
                self.events.append(effect.event)

    # ---- looking

    def last(self, tab: Tab) -> OfferMessage | EndedMessage | None:
        return tab.messages[-1] if tab.messages else None

    def offered(self, tab: Tab) -> str | None:
        """The task id of the open offer this tab shows, if any."""
        last = self.last(tab)
        if isinstance(last, OfferMessage) and not last.assigned and tab.open:
            return last.task_id
        return None

    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.events]
