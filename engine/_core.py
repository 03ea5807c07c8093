"""The dispatch core: a deterministic state machine with no I/O, no clock and no randomness.

Theory of operation
-------------------
Every input is a method call that takes ``now`` (the driver's monotonic clock) and returns a list
of effects (``_effects``) for the driver to carry out in order. Each input runs to completion in
one synchronous step, so no two inputs interleave, and the same inputs in the same order always
give the same state and the same effects: the input sequence can be journaled and replayed.

Tasks are PENDING, OFFERED (to exactly one operator; a take-free *claim* is an offer that is never
shown to tabs), ASSIGNED or CANCELLED. An operator record exists while he has open tabs, an open
offer, or pushed tasks not yet delivered; he *waits* (is in the queue) exactly when he has a tab,
no offer and nothing to be pushed.

Invariants kept after every input (checked by tests/core):

1. A task is in exactly one state; an OFFERED task and its operator point at the same offer.
2. An operator holds at most one offer.
3. No idle match: no pending task suits a waiting operator (suits = indexed eligibility, not
   excluded after a reject/expiry/refusal, and the host's predicate).
4. Order: a new offer goes to the longest-waiting suitable operator; an operator gets the best
   (priority, then age) pending task that suits him. Because of 3, an input can create at most the
   matches involving the one task or the one operator it touched, so matching is local.
5. An offer ends exactly once (assigned, rejected, expired, withdrawn, cancelled), and that end is
   sent to every open tab of the operator, whose streams then end.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._effects import (
    Close,
    Confirm,
    Effect,
    EndedMessage,
    EngineEvent,
    EventKind,
    Notify,
    OfferMessage,
    Send,
)
from ._errors import InvalidInput, NotOfferedToYou, TaskClosed, TaskExists, TaskNotFound
from ._index import PendingIndex, WaitingIndex
from ._types import (
    CloseReason,
    EndReason,
    Operator,
    OperatorId,
    OperatorStatus,
    QueueEntry,
    TabId,
    TaskId,
    TaskInfo,
    TaskSpec,
    TaskState,
)

Predicate = Callable[[TaskInfo, Operator], bool]

_EXPIRY = 0
_GRACE = 1
_TTL = 2


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """Timings in seconds. ``disconnect_grace`` None means "the offer timeout"."""

    offer_timeout: float = 40.0
    disconnect_grace: float | None = None
    retain_ended: int = 100_000
    predicate: Predicate | None = None

    def __post_init__(self) -> None:
        if not self.offer_timeout > 0:
            raise ValueError("offer_timeout must be positive")
        if self.disconnect_grace is not None and not self.disconnect_grace >= 0:
            raise ValueError("disconnect_grace must be zero or positive")
        if self.retain_ended < 0:
            raise ValueError("retain_ended must be zero or positive")

    @property
    def grace(self) -> float:
        return self.offer_timeout if self.disconnect_grace is None else self.disconnect_grace


class _Task:
    __slots__ = (
        "added_at",
        "end_reason",
        "entry",
        "excluded",
        "expires_at",
        "id",
        "min_grade",
        "offer",
        "operator_id",
        "payload",
        "pool",
        "priority",
        "pushed",
        "seq",
        "state",
    )

    def __init__(self, spec: TaskSpec, seq: int, now: float) -> None:
        self.id = spec.id
        self.priority = spec.priority
        self.pool = spec.pool
        self.min_grade = spec.min_grade
        self.payload = spec.payload
        self.seq = seq
        self.added_at = now
        self.expires_at = None if spec.ttl is None else now + spec.ttl
        self.state = TaskState.PENDING
        self.entry: list[Any] | None = None
        self.excluded: set[OperatorId] | None = None
        self.offer: _Offer | None = None
        self.operator_id: OperatorId | None = None
        self.pushed = False
        self.end_reason: str | None = None

    def info(self) -> TaskInfo:
        return TaskInfo(
            id=self.id,
            state=self.state,
            priority=self.priority,
            pool=self.pool,
            min_grade=self.min_grade,
            operator_id=self.offer.operator.id if self.offer else self.operator_id,
            added_at=self.added_at,
            payload=self.payload,
            pushed=self.pushed,
            end_reason=self.end_reason,
        )

    def __repr__(self) -> str:
        return f"<task {self.id} {self.state.name} priority={self.priority}>"


class _Offer:
    __slots__ = ("claim", "confirming", "deadline", "id", "operator", "task")

    def __init__(
        self, offer_id: int, task: _Task, operator: _Op, deadline: float | None, claim: bool
    ) -> None:
        self.id = offer_id
        self.task = task
        self.operator = operator
        self.deadline = deadline
        self.claim = claim
        self.confirming = claim


class _Push:
    __slots__ = ("in_flight", "offer_id", "payload", "task_id")

    def __init__(self, task_id: TaskId, offer_id: int, payload: Any) -> None:
        self.task_id = task_id
        self.offer_id = offer_id
        self.payload = payload
        self.in_flight = 0


class _Op:
    __slots__ = ("grace_at", "grade", "id", "offer", "pools", "profile", "pushes", "seq", "since",
                 "tabs")

    def __init__(self, profile: Operator) -> None:
        self.id = profile.id
        self.profile = profile
        self.grade = profile.grade
        self.pools = profile.pools
        self.tabs: dict[TabId, None] = {}
        self.offer: _Offer | None = None
        self.pushes: list[_Push] = []
        self.seq = -1
        self.since = 0.0
        self.grace_at: float | None = None

    @property
    def waiting(self) -> bool:
        return self.seq >= 0

    def status(self) -> OperatorStatus:
        if self.offer is not None:
            return OperatorStatus.CONFIRMING if self.offer.confirming else OperatorStatus.OFFERED
        if self.pushes:
            return OperatorStatus.RECEIVING_PUSH
        return OperatorStatus.WAITING if self.tabs else OperatorStatus.AWAY

    def __repr__(self) -> str:
        return f"<operator {self.id} {self.status().name} tabs={len(self.tabs)}>"


class Core:
    """The dispatch state machine. Not thread-safe; every method is one synchronous step.

    Inputs raise a ``QueueTasksError`` (and change nothing) on misuse, or return effects.
    """

    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self._tasks: dict[TaskId, _Task] = {}
        self._ended: OrderedDict[TaskId, _Task] = OrderedDict()
        self._ops: dict[OperatorId, _Op] = {}
        self._tabs: dict[TabId, _Op] = {}
        self._waiting: WaitingIndex[_Op] = WaitingIndex()
        self._pending: PendingIndex[_Task] = PendingIndex()
        self._timers: list[tuple[float, int, int, str, int]] = []
        self._seq = 0
        self._offer_ids = 0
        self._offers = 0
        self._open_offers = 0
        self.counters: dict[str, int] = dict.fromkeys(
            ("added", "pushed", "offered", "assigned", "rejected", "expired", "withdrawn",
             "refused", "cancelled", "claimed"),
            0,
        )

    # ------------------------------------------------------------------ producer inputs

    def add_task(self, spec: TaskSpec, now: float) -> list[Effect]:
        """A new task: offered at once to the longest-waiting suitable operator, else pending."""
        self._check_new_id(spec.id)
        self._seq += 1
        task = _Task(spec, self._seq, now)
        self._tasks[task.id] = task
        self.counters["added"] += 1
        fx: list[Effect] = [Notify(EngineEvent(EventKind.ADDED, task.id, None, now, 0.0))]
        if task.expires_at is not None:
            self._timer(task.expires_at, _TTL, task.id, 0)
        self._to_pending(task, now, fx)
        return fx

    def push_task(
        self, task_id: TaskId, operator_id: OperatorId, now: float, payload: Any = None
    ) -> list[Effect]:
        """A task the host assigned itself: delivered to the operator's tabs, kept until then.

        A new id is created ASSIGNED; a pending task, or one offered to someone, is taken over
        (his offer is withdrawn). Raises ``TaskClosed`` for an assigned, cancelled or confirming
        task."""
        if not isinstance(operator_id, str) or not operator_id:
            raise InvalidInput("operator id must be a non-empty string")
        fx: list[Effect] = []
        task = self._tasks.get(task_id)
        if task is None and task_id in self._ended:
            raise TaskClosed(f"task {task_id} is already {self._ended[task_id].state.value}")
        if task is None:
            self._check_new_id(task_id)
            self._seq += 1
            task = _Task(TaskSpec(task_id, payload=payload), self._seq, now)
            self._tasks[task_id] = task
        elif task.state is TaskState.PENDING:
            self._pending.remove(task)
            if payload is not None:
                task.payload = payload
        elif task.state is TaskState.OFFERED:
            assert task.offer is not None
            if task.offer.confirming:
                raise TaskClosed(f"task {task_id} is being confirmed for operator "
                                 f"{task.offer.operator.id}")
            self._end_offer(task.offer, EndReason.WITHDRAWN, now, fx, back_to_pending=False,
                            detail="pushed elsewhere")
            if payload is not None:
                task.payload = payload
        else:
            raise TaskClosed(f"task {task_id} is already {task.state.value}")
        task.pushed = True
        self.counters["pushed"] += 1
        self._finish(task, TaskState.ASSIGNED, operator_id, "pushed")
        fx.append(Notify(EngineEvent(EventKind.PUSHED, task_id, operator_id, now,
                                     now - task.added_at)))
        op = self._ops.get(operator_id)
        if op is None:
            op = self._ops[operator_id] = _Op(Operator(operator_id))
        self._offer_ids += 1
        op.pushes.append(_Push(task_id, self._offer_ids, task.payload))
        self._settle_operator(op, now, fx)
        return fx

    def cancel_task(self, task_id: TaskId, now: float) -> list[Effect]:
        """Cancel a pending or offered task (an open offer ends with reason ``cancelled``)."""
        task = self._tasks.get(task_id)
        if task is None:
            if task_id in self._ended:
                raise TaskClosed(f"task {task_id} is already {self._ended[task_id].state.value}")
            raise TaskNotFound(f"task {task_id} is unknown")
        fx: list[Effect] = []
        if task.state is TaskState.OFFERED:
            assert task.offer is not None
            if task.offer.confirming:
                raise TaskClosed(f"task {task_id} is being confirmed for operator "
                                 f"{task.offer.operator.id}")
            self._end_offer(task.offer, EndReason.CANCELLED, now, fx, back_to_pending=False)
        else:
            self._pending.remove(task)
        self._cancel(task, now, "cancelled", fx)
        return fx

    # ------------------------------------------------------------------ operator inputs

    def open_tab(self, operator: Operator, tab: TabId, now: float) -> list[Effect]:
        """A tab of ``operator`` opened its stream. It gets his open offer (same offer id, same
        deadline) or his next pushed task; otherwise he waits, keeping his place if he already
        waited in another tab."""
        if tab in self._tabs:
            raise InvalidInput(f"tab {tab} is already open")
        fx: list[Effect] = []
        op = self._ops.get(operator.id)
        if op is None:
            op = self._ops[operator.id] = _Op(operator)
        elif operator != op.profile:
            if op.waiting and (operator.grade != op.grade or operator.pools != op.pools):
                self._leave_queue(op)
            op.profile, op.grade, op.pools = operator, operator.grade, operator.pools
        op.tabs[tab] = None
        self._tabs[tab] = op
        offer = op.offer
        if offer is not None and not offer.claim:
            op.grace_at = None
            fx.append(Send((tab,), self._offer_message(offer), None))
        else:
            self._settle_operator(op, now, fx)
        return fx

    def close_tab(self, tab: TabId, now: float) -> list[Effect]:
        """A tab's stream is gone (closed, reset, cancelled). A waiting operator whose last tab
        closed leaves the queue at once; during an offer the disconnect grace starts."""
        op = self._tabs.pop(tab, None)
        if op is None:
            return []
        del op.tabs[tab]
        fx: list[Effect] = []
        if not op.tabs:
            offer = op.offer
            if offer is not None and not offer.confirming:
                grace = self.config.grace
                if grace <= 0:
                    self._end_offer(offer, EndReason.WITHDRAWN, now, fx, detail="disconnected")
                else:
                    op.grace_at = now + grace
                    self._timer(op.grace_at, _GRACE, op.id, offer.id)
        self._settle_operator(op, now, fx)
        return fx

    def assign(self, operator_id: OperatorId, task_id: TaskId, now: float) -> list[Effect]:
        """The operator accepts his offer: the offer waits for the host (a ``Confirm`` effect),
        its timeout suspended. Raises ``NotOfferedToYou`` otherwise."""
        offer = self._own_offer(operator_id, task_id)
        offer.confirming = True
        return [Confirm(operator_id, task_id, claim=False)]

    def reject(self, operator_id: OperatorId, task_id: TaskId, now: float) -> list[Effect]:
        """The operator declines his offer: it ends for all his tabs and goes to the next one."""
        offer = self._own_offer(operator_id, task_id)
        fx: list[Effect] = []
        self._end_offer(offer, EndReason.REJECTED, now, fx)
        return fx

    def confirm(
        self, operator_id: OperatorId, task_id: TaskId, ok: bool, now: float,
        detail: str | None = None,
    ) -> list[Effect]:
        """The host's answer to a ``Confirm``: assigned, or refused (the task is pending again
        and never offered to this operator again)."""
        op = self._ops.get(operator_id)
        offer = op.offer if op is not None else None
        if offer is None or offer.task.id != task_id or not offer.confirming:
            raise NotOfferedToYou(f"task {task_id} is not being confirmed for "
                                  f"operator {operator_id}")
        fx: list[Effect] = []
        if ok:
            task = offer.task
            self._end_offer(offer, EndReason.ASSIGNED, now, fx, back_to_pending=False)
            self._finish(task, TaskState.ASSIGNED, operator_id,
                         "claimed" if offer.claim else "assigned")
            self.counters["assigned"] += 1
            if offer.claim:
                self.counters["claimed"] += 1
            fx.append(Notify(EngineEvent(EventKind.ASSIGNED, task_id, operator_id, now,
                                         now - task.added_at, "claimed" if offer.claim else None)))
        else:
            self.counters["refused"] += 1
            fx.append(Notify(EngineEvent(EventKind.REFUSED, task_id, operator_id, now,
                                         now - offer.task.added_at, detail)))
            self._end_offer(offer, EndReason.WITHDRAWN, now, fx, detail=detail or "refused")
        return fx

    def take_free(
        self, operator: Operator, now: float, skip: frozenset[TaskId] = frozenset()
    ) -> tuple[TaskId | None, list[Effect]]:
        """Pull the best pending task for ``operator`` at once, even when others wait (it may be
        one he rejected before). Returns the claimed id and a ``Confirm`` effect, or None when
        nothing suits him or he already waits in a tab, holds an offer or awaits a push.
        ``skip`` holds the ids the host already refused him in this pull."""
        if operator.id in self._ops:
            return None, []
        predicate = self.config.predicate

        def accept(task: _Task) -> bool:
            if task.id in skip:
                return False
            return predicate is None or predicate(task.info(), operator)

        task = self._pending.best_for(operator.pools, operator.grade, accept)
        if task is None:
            return None, []
        op = self._ops[operator.id] = _Op(operator)
        self._pending.remove(task)
        self._offer_ids += 1
        offer = _Offer(self._offer_ids, task, op, None, claim=True)
        task.state, task.offer, op.offer = TaskState.OFFERED, offer, offer
        self._open_offers += 1
        return task.id, [Confirm(operator.id, task.id, claim=True)]

    def push_sent(self, operator_id: OperatorId, offer_id: int, delivered: bool,
                  now: float) -> list[Effect]:
        """A tab that was given a pushed task reports whether it wrote it. Once one tab wrote it,
        it is delivered; when every tab it went to failed, it waits for the next tab."""
        op = self._ops.get(operator_id)
        if op is None:
            return []
        push = next((p for p in op.pushes if p.offer_id == offer_id), None)
        if push is None:
            return []
        fx: list[Effect] = []
        if delivered:
            op.pushes.remove(push)
            fx.append(Notify(EngineEvent(EventKind.DELIVERED, push.task_id, operator_id, now,
                                         0.0)))
        else:
            push.in_flight -= 1
        self._settle_operator(op, now, fx)
        return fx

    def exit(self, operator_id: OperatorId, now: float) -> list[Effect]:
        """Stop waiting in every tab; an open offer is withdrawn (a confirming one is not)."""
        op = self._ops.get(operator_id)
        if op is None:
            return []
        fx: list[Effect] = []
        offer = op.offer
        if offer is not None and not offer.confirming:
            self._end_offer(offer, EndReason.WITHDRAWN, now, fx, detail="exit")
        tabs = self._detach_tabs(op)
        if tabs:
            fx.append(Close(tabs, CloseReason.EXIT))
        self._settle_operator(op, now, fx)
        return fx

    def shutdown(self) -> list[Effect]:
        """End every stream (the engine is stopping); no state but the tabs changes."""
        fx: list[Effect] = []
        for op in list(self._ops.values()):
            tabs = self._detach_tabs(op)
            if tabs:
                fx.append(Close(tabs, CloseReason.SHUTDOWN))
            if op.waiting:
                self._leave_queue(op)
        return fx

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """When ``advance`` next has something to do, or None."""
        timers = self._timers
        while timers and not self._timer_live(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def advance(self, now: float) -> list[Effect]:
        """Time passes: offers expire, disconnect graces run out, task lifetimes end."""
        fx: list[Effect] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)
            if not self._timer_live(timer):
                continue
            _, _, kind, key, _ = timer
            if kind == _EXPIRY:
                offer = self._tasks[TaskId(key)].offer
                assert offer is not None
                self._end_offer(offer, EndReason.EXPIRED, now, fx)
            elif kind == _GRACE:
                offer = self._ops[OperatorId(key)].offer
                assert offer is not None
                self._end_offer(offer, EndReason.WITHDRAWN, now, fx, detail="disconnected")
            else:
                task = self._tasks[TaskId(key)]
                if task.state is TaskState.OFFERED:
                    continue  # an open offer runs to its end; see ``_timer_live``
                self._pending.remove(task)
                self._cancel(task, now, "ttl", fx)
        return fx

    # ------------------------------------------------------------------ queries

    def task(self, task_id: TaskId) -> TaskInfo:
        task = self._tasks.get(task_id) or self._ended.get(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id} is unknown")
        return task.info()

    def queue(self) -> list[QueueEntry]:
        """Operators with open tabs: the waiting ones in queue order, then the busy ones."""
        ops = [op for op in self._ops.values() if op.tabs or op.offer is not None]
        ops.sort(key=lambda op: (not op.waiting, op.seq if op.waiting else op.since))
        return [
            QueueEntry(op.id, op.since, op.status(), len(op.tabs),
                       op.offer.task.id if op.offer is not None else None)
            for op in ops
        ]

    def offer_of(self, operator_id: OperatorId) -> TaskId | None:
        op = self._ops.get(operator_id)
        return op.offer.task.id if op is not None and op.offer is not None else None

    def statistics(self) -> dict[str, int]:
        return {
            "waiting_operators": len(self._waiting),
            "operators": len(self._ops),
            "open_tabs": len(self._tabs),
            "pending_tasks": len(self._pending),
            "open_offers": self._open_offers,
            "live_tasks": len(self._tasks),
            **{f"total_{k}": v for k, v in self.counters.items()},
        }

    # ------------------------------------------------------------------ internals

    def _check_new_id(self, task_id: TaskId) -> None:
        if not isinstance(task_id, str) or not task_id:
            raise InvalidInput("task id must be a non-empty string")
        if task_id in self._tasks or task_id in self._ended:
            raise TaskExists(f"task {task_id} already exists")

    def _own_offer(self, operator_id: OperatorId, task_id: TaskId) -> _Offer:
        op = self._ops.get(operator_id)
        offer = op.offer if op is not None else None
        if offer is None or offer.task.id != task_id or offer.confirming:
            raise NotOfferedToYou(f"task {task_id} is not offered to operator {operator_id}")
        return offer

    def _timer(self, at: float, kind: int, key: str, token: int) -> None:
        self._offers += 1
        heapq.heappush(self._timers, (at, self._offers, kind, key, token))

    def _timer_live(self, timer: tuple[float, int, int, str, int]) -> bool:
        at, _, kind, key, token = timer
        if kind == _EXPIRY:
            task = self._tasks.get(TaskId(key))
            offer = task.offer if task is not None else None
            return offer is not None and offer.id == token and not offer.confirming
        if kind == _GRACE:
            op = self._ops.get(OperatorId(key))
            offer = op.offer if op is not None else None
            return (offer is not None and offer.id == token and not offer.confirming
                    and op is not None and not op.tabs and op.grace_at == at)
        # A task's lifetime timer stays live while the task is offered: the offer is not cut
        # short, but if it ends after the lifetime the task is cancelled as it comes back
        # (``_to_pending``), and if it ends before, this timer must still be there.
        task = self._tasks.get(TaskId(key))
        return task is not None and task.expires_at == at

    def _accepts(self, task: _Task, op: _Op) -> bool:
        if task.excluded is not None and op.id in task.excluded:
            return False
        predicate = self.config.predicate
        return predicate is None or predicate(task.info(), op.profile)

    def _to_pending(self, task: _Task, now: float, fx: list[Effect]) -> None:
        """Put a task (new, or back from an offer) in the queue, or offer it right away."""
        if task.expires_at is not None and task.expires_at <= now:
            self._cancel(task, now, "ttl", fx)
            return
        op = self._waiting.best_for(task.pool, task.min_grade, lambda o: self._accepts(task, o))
        if op is not None:
            self._offer(task, op, now, fx)
        else:
            task.state = TaskState.PENDING
            self._pending.add(task)

    def _settle_operator(self, op: _Op, now: float, fx: list[Effect]) -> None:
        """Bring the operator's queue membership in line with his state, and match him."""
        if op.pushes and op.tabs and op.offer is None:
            push = op.pushes[0]
            if push.in_flight == 0:
                tabs = self._detach_tabs(op)
                push.in_flight = len(tabs)
                message = OfferMessage(push.task_id, push.offer_id, True, None, push.payload)
                fx.append(Send(tabs, message, CloseReason.PUSHED))
        should_wait = bool(op.tabs) and op.offer is None and not op.pushes
        if should_wait and not op.waiting:
            task = self._pending.best_for(op.pools, op.grade, lambda t: self._accepts(t, op))
            self._seq += 1
            op.seq, op.since = self._seq, now
            self._waiting.add(op)
            if task is not None:
                self._offer(task, op, now, fx)
        elif not should_wait and op.waiting:
            self._leave_queue(op)
        if not op.tabs and op.offer is None and not op.pushes and self._ops.get(op.id) is op:
            del self._ops[op.id]

    def _leave_queue(self, op: _Op) -> None:
        self._waiting.remove(op)
        op.seq = -1

    def _detach_tabs(self, op: _Op) -> tuple[TabId, ...]:
        tabs = tuple(op.tabs)
        for tab in tabs:
            del self._tabs[tab]
        op.tabs.clear()
        return tabs

    def _offer(self, task: _Task, op: _Op, now: float, fx: list[Effect]) -> None:
        if task.entry is not None:
            self._pending.remove(task)
        self._leave_queue(op)
        self._offer_ids += 1
        deadline = now + self.config.offer_timeout
        offer = _Offer(self._offer_ids, task, op, deadline, claim=False)
        task.state, task.offer, op.offer, op.grace_at = TaskState.OFFERED, offer, offer, None
        self._open_offers += 1
        self._timer(deadline, _EXPIRY, task.id, offer.id)
        self.counters["offered"] += 1
        fx.append(Send(tuple(op.tabs), self._offer_message(offer), None))
        fx.append(Notify(EngineEvent(EventKind.OFFERED, task.id, op.id, now,
                                     now - task.added_at)))

    @staticmethod
    def _offer_message(offer: _Offer) -> OfferMessage:
        task = offer.task
        return OfferMessage(task.id, offer.id, False, offer.deadline, task.payload)

    def _end_offer(
        self, offer: _Offer, reason: EndReason, now: float, fx: list[Effect],
        *, back_to_pending: bool = True, detail: str | None = None,
    ) -> None:
        """End ``offer`` once: tell every open tab, end their streams, and unless the task is
        being closed, exclude the operator from it and queue it again."""
        task, op = offer.task, offer.operator
        task.offer, op.offer, op.grace_at = None, None, None
        if not offer.claim:
            tabs = self._detach_tabs(op)
            if tabs:
                fx.append(Send(tabs, EndedMessage(task.id, offer.id, reason),
                               CloseReason.OFFER_ENDED))
        self._open_offers -= 1
        if not offer.claim and reason not in (EndReason.ASSIGNED, EndReason.CANCELLED):
            kind = EventKind(reason.value)
            self.counters[kind.value] += 1
            fx.append(Notify(EngineEvent(kind, task.id, op.id, now, now - task.added_at,
                                         detail)))
        if back_to_pending:
            if task.excluded is None:
                task.excluded = set()
            task.excluded.add(op.id)
            self._to_pending(task, now, fx)
        self._settle_operator(op, now, fx)

    def _finish(self, task: _Task, state: TaskState, operator_id: OperatorId | None,
                reason: str) -> None:
        task.state, task.operator_id, task.end_reason = state, operator_id, reason
        task.excluded = None
        del self._tasks[task.id]
        if self.config.retain_ended:
            self._ended[task.id] = task
            if len(self._ended) > self.config.retain_ended:
                self._ended.popitem(last=False)

    def _cancel(self, task: _Task, now: float, reason: str, fx: list[Effect]) -> None:
        self._finish(task, TaskState.CANCELLED, None, reason)
        self.counters["cancelled"] += 1
        fx.append(Notify(EngineEvent(EventKind.CANCELLED, task.id, None, now,
                                     now - task.added_at, reason)))
