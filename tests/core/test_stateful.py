"""Hypothesis drives the core with every input in random order and checks every guarantee of
SPEC section 3 after every step (white-box: it reads the core's records to know the truth)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from queuetasks.engine import (
    Confirm,
    CoreConfig,
    EndedMessage,
    EndReason,
    EventKind,
    NotOfferedToYou,
    OfferMessage,
    Operator,
    OperatorId,
    QueueTasksError,
    TaskId,
    TaskInfo,
    TaskState,
)

from .harness import Driver, Tab

OPERATORS = ["o1", "o2", "o3", "o4"]
TASKS = [f"t{i}" for i in range(8)]
POOLS = ["x", "y"]


def profile(op: str, variant: int) -> Operator:
    """Each operator has two possible profiles, so re-arrivals sometimes change attributes."""
    i = OPERATORS.index(op)
    pools = [frozenset({"x"}), frozenset({"y"}), frozenset({"x", "y"}), frozenset({"x"})][i]
    if variant:
        pools = frozenset(POOLS) - pools or frozenset({"y"})
    return Operator(OperatorId(op), grade=(i + variant) % 3, pools=pools)


def predicate(task: TaskInfo, op: Operator) -> bool:
    return not (op.id == "o4" and task.priority == 3)


@dataclass
class Before:
    """What the world looked like before a step, for checks that compare before and after."""

    waiting: dict[str, int]
    pending: set[str]
    offers: dict[str, tuple[int, str, bool]]  # operator -> (offer id, task id, claim)
    tabs: dict[str, set[int]]


class CoreMachine(RuleBasedStateMachine):
    @initialize(use_predicate=st.booleans(), grace=st.sampled_from([None, 0.0, 5.0]))
    def setup(self, use_predicate: bool, grace: float | None) -> None:
        self.d = Driver(CoreConfig(offer_timeout=40.0, disconnect_grace=grace,
                                   predicate=predicate if use_predicate else None))
        self.use_predicate = use_predicate
        self.added: set[str] = set()
        self.cancelled_by_host: set[str] = set()
        self.ttl_of: dict[str, float] = {}
        self.assigned_to: dict[str, str] = {}
        self.offered_to: dict[str, set[str]] = {}
        self.confirm_requested: set[tuple[str, str]] = set()
        self.closed_by_client: set[int] = set()

    # ------------------------------------------------------------------ helpers

    @property
    def core(self):  # type: ignore[no-untyped-def]
        return self.d.core

    def snapshot(self) -> Before:
        waiting = {op.id: op.seq for op in self.core._ops.values() if op.waiting}
        pending = {t.id for t in self.core._tasks.values() if t.state is TaskState.PENDING}
        offers = {op.id: (op.offer.id, op.offer.task.id, op.offer.claim)
                  for op in self.core._ops.values() if op.offer is not None}
        tabs = {op.id: set(op.tabs) for op in self.core._ops.values()}
        return Before(waiting, pending, offers, tabs)

    def suits(self, task_id: str, op_id: str) -> bool:
        task = self.core._tasks.get(TaskId(task_id))
        op = self.core._ops.get(OperatorId(op_id))
        if task is None or op is None:
            return False
        if task.pool not in op.pools or op.grade < task.min_grade:
            return False
        if task.excluded and op_id in task.excluded:
            return False
        return not self.use_predicate or predicate(task.info(), op.profile)

    def step(self, action, *args, **kw) -> bool:  # type: ignore[no-untyped-def]
        """Run one input, then check what can only be checked against the state before it."""
        before = self.snapshot()
        events_before = len(self.d.events)
        try:
            action(*args, **kw)
        except QueueTasksError as exc:
            note(f"refused: {exc!r}")
            assert self.snapshot() == before, "a refused input changed state"
            return False
        self.check_step(before, self.d.events[events_before:])
        return True

    def check_step(self, before: Before, events: list) -> None:  # type: ignore[type-arg]
        effects = self.d.step_effects if len(events) or True else []
        sent: dict[int, list[OfferMessage | EndedMessage]] = {}
        for tab in self.d.tabs.values():
            sent[tab.id] = tab.messages  # full history; we look at tails below
        new_offers = []
        for event in events:
            if event.kind is EventKind.OFFERED:
                new_offers.append((event.operator_id, event.task_id))
                self.offered_to.setdefault(event.task_id, set()).add(event.operator_id)
            elif event.kind is EventKind.ASSIGNED:
                task = event.task_id
                assert task not in self.assigned_to, f"{task} assigned twice"
                assert (event.operator_id, task) in self.confirm_requested, \
                    f"{task} assigned to {event.operator_id} without an offer or a pull"
                self.assigned_to[task] = event.operator_id
            elif event.kind is EventKind.PUSHED:
                assert event.task_id not in self.assigned_to
                self.assigned_to[event.task_id] = event.operator_id
        for effect in effects:
            if isinstance(effect, Confirm):
                key = (effect.operator_id, effect.task_id)
                if not effect.claim:
                    assert effect.operator_id in self.offered_to.get(effect.task_id, set())
                self.confirm_requested.add(key)

        # Order: each new offer went to the longest-waiting suitable operator among those waiting
        # before the step (and not taken earlier in it), and was his best pending task.
        still = self.snapshot()
        consumed_ops: set[str] = set()
        consumed_tasks: set[str] = set()
        for op_id, task_id in new_offers:
            seq = before.waiting.get(op_id, math.inf)
            for other, other_seq in before.waiting.items():
                if other in consumed_ops or other == op_id:
                    continue
                if other not in still.waiting and other not in [o for o, _ in new_offers]:
                    continue
                if other_seq < seq:
                    assert not self.suits(task_id, other), \
                        f"{task_id} went to {op_id} while {other} waited longer"
            task = self.core._tasks.get(TaskId(task_id))
            key = (-task.priority, task.seq) if task else None
            for other_task in before.pending - consumed_tasks - {task_id}:
                rec = self.core._tasks.get(TaskId(other_task))
                if rec is None or key is None:
                    continue
                if (-rec.priority, rec.seq) < key:
                    assert not self.suits(other_task, op_id), \
                        f"{op_id} got {task_id} while better {other_task} was pending"
            consumed_ops.add(op_id)
            consumed_tasks.add(task_id)

        # Every offer that ended was told to every tab its operator had open before the step
        # (except the tabs the client itself closed in this step), with the end of that offer.
        for op_id, (offer_id, _task_id, claim) in before.offers.items():
            after = still.offers.get(op_id)
            if claim or (after is not None and after[0] == offer_id):
                continue
            for tab_id in before.tabs.get(op_id, set()) - self.closed_by_client:
                last = self.d.tabs[tab_id].messages[-1]
                told = f"tab {tab_id} of {op_id} was not told that offer {offer_id} ended"
                assert isinstance(last, EndedMessage), told
                assert last.offer_id == offer_id, told
                assert not self.d.tabs[tab_id].open
        self.closed_by_client.clear()

    def open_tabs(self) -> list[Tab]:
        return [t for t in self.d.tabs.values() if t.open]

    # ------------------------------------------------------------------ rules

    @rule(task=st.sampled_from(TASKS), priority=st.integers(0, 3), pool=st.sampled_from(POOLS),
          min_grade=st.integers(0, 2), ttl=st.sampled_from([None, None, 10.0, 60.0]))
    def add(self, task: str, priority: int, pool: str, min_grade: int,
            ttl: float | None) -> None:
        if self.step(self.d.add, task, priority=priority, pool=pool, min_grade=min_grade,
                     ttl=ttl):
            self.added.add(task)
            if ttl is not None:
                self.ttl_of[task] = self.d.now + ttl

    @rule(task=st.sampled_from([*TASKS, "p1", "p2", "p3"]), op=st.sampled_from(OPERATORS))
    def push(self, task: str, op: str) -> None:
        if self.step(self.d.push, task, op):
            self.added.add(task)

    @rule(task=st.sampled_from(TASKS))
    def cancel(self, task: str) -> None:
        if self.step(self.d.cancel, task):
            self.cancelled_by_host.add(task)

    @rule(op=st.sampled_from(OPERATORS), variant=st.sampled_from([0, 0, 0, 1]))
    def open_tab(self, op: str, variant: int) -> None:
        self.step(self.d.open, profile(op, variant))

    @precondition(lambda self: any(t.open for t in self.d.tabs.values()))
    @rule(data=st.data())
    def close_tab(self, data: st.DataObject) -> None:
        tab = data.draw(st.sampled_from(sorted(self.open_tabs(), key=lambda t: t.id)))
        self.closed_by_client.add(tab.id)
        self.step(self.d.close, tab)

    @rule(op=st.sampled_from(OPERATORS), task=st.sampled_from(TASKS))
    def assign_anything(self, op: str, task: str) -> None:
        """Any operator may try any task: only his own open offer may succeed."""
        offer = self.core.offer_of(OperatorId(op))
        mine = offer == task and not self.core._ops[OperatorId(op)].offer.confirming
        before = self.snapshot()
        try:
            self.d.run(self.core.assign(OperatorId(op), TaskId(task), self.d.now))
        except NotOfferedToYou:
            assert not mine
            assert self.snapshot() == before
        else:
            assert mine
            self.check_step(before, [])

    @rule(op=st.sampled_from(OPERATORS), task=st.sampled_from(TASKS))
    def reject_anything(self, op: str, task: str) -> None:
        offer = self.core.offer_of(OperatorId(op))
        rec = self.core._ops.get(OperatorId(op))
        mine = offer == task and rec is not None and not rec.offer.confirming
        ok = self.step(self.d.reject, op, task)
        assert ok == mine

    @precondition(lambda self: bool(self.d.confirms))
    @rule(data=st.data(), ok=st.booleans())
    def host_answers(self, data: st.DataObject, ok: bool) -> None:
        confirm = data.draw(st.sampled_from(self.d.confirms))
        self.step(self.d.answer, confirm.operator_id, confirm.task_id, ok)

    @rule(op=st.sampled_from(OPERATORS), variant=st.sampled_from([0, 1]))
    def take_free(self, op: str, variant: int) -> None:
        p = profile(op, variant)
        before = self.snapshot()
        task_id, fx = self.core.take_free(p, self.d.now)
        if task_id is None:
            assert fx == []
            assert self.snapshot() == before
            return
        assert op not in before.offers
        assert op not in before.tabs
        assert task_id in before.pending
        self.d.run(fx)
        self.check_step(before, [])

    @rule(op=st.sampled_from(OPERATORS))
    def exit(self, op: str) -> None:
        self.closed_by_client |= {t.id for t in self.open_tabs() if t.operator == op} and set()
        self.step(self.d.exit, op)

    @precondition(lambda self: bool(self.d.pushes_in_flight))
    @rule(ok=st.booleans())
    def pushes_written(self, ok: bool) -> None:
        self.step(self.d.deliver, ok)

    @rule(dt=st.sampled_from([0.0, 1.0, 4.9, 5.0, 10.0, 39.9, 40.0, 100.0]))
    def time_passes(self, dt: float) -> None:
        self.step(self.d.advance, dt)

    @precondition(lambda self: self.d.core.next_deadline() is not None)
    @rule()
    def jump_to_next_deadline(self) -> None:
        deadline = self.core.next_deadline()
        assert deadline is not None
        assert deadline >= self.d.now
        self.step(self.d.advance, deadline - self.d.now)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_state_per_task(self) -> None:
        for task_id, task in self.core._tasks.items():
            assert task_id not in self.core._ended
            assert task.state in (TaskState.PENDING, TaskState.OFFERED)
            assert (task.state is TaskState.PENDING) == (task.entry is not None)
            if task.state is TaskState.OFFERED:
                assert task.offer is not None
                assert task.offer.operator.offer is task.offer
                assert self.core._ops[task.offer.operator.id] is task.offer.operator
            else:
                assert task.offer is None
        for task in self.core._ended.values():
            assert task.state in (TaskState.ASSIGNED, TaskState.CANCELLED)
        assert len(self.core._pending) == sum(
            1 for t in self.core._tasks.values() if t.state is TaskState.PENDING)

    @invariant()
    def never_lost(self) -> None:
        for task_id in self.added:
            info = self.core.task(TaskId(task_id))
            if info.state is TaskState.CANCELLED:
                if info.end_reason == "ttl":
                    assert self.ttl_of[task_id] <= self.d.now
                else:
                    assert task_id in self.cancelled_by_host
            if info.state is TaskState.ASSIGNED:
                assert self.assigned_to[task_id] == info.operator_id

    @invariant()
    def one_offer_per_operator(self) -> None:
        holders = [t.offer.operator.id for t in self.core._tasks.values() if t.offer]
        assert len(holders) == len(set(holders))
        for op in self.core._ops.values():
            if op.offer is not None:
                assert op.offer.task.offer is op.offer

    @invariant()
    def no_idle_match(self) -> None:
        waiting = [op for op in self.core._ops.values() if op.waiting]
        for op in self.core._ops.values():
            assert op.waiting == (bool(op.tabs) and op.offer is None and not op.pushes)
        assert len(self.core._waiting) == len(waiting)
        for task in self.core._tasks.values():
            if task.state is TaskState.PENDING:
                for op in waiting:
                    assert not self.suits(task.id, op.id), f"{task.id} idles beside {op.id}"

    @invariant()
    def lifetimes_are_kept(self) -> None:
        """A pending task never outlives its ttl (an offer in progress may run past it)."""
        for task_id, ends_at in self.ttl_of.items():
            task = self.core._tasks.get(TaskId(task_id))
            if task is not None and task.state is TaskState.PENDING:
                assert ends_at > self.d.now, f"{task_id} outlived its ttl ({ends_at})"

    @invariant()
    def runtime_view_matches(self) -> None:
        mine = {t.id for t in self.d.tabs.values() if t.open}
        assert mine == set(self.core._tabs)
        for op in self.core._ops.values():
            for tab_id in op.tabs:
                assert self.d.tabs[tab_id].operator == op.id
                if op.offer is not None and not op.offer.claim:
                    last = self.d.tabs[tab_id].messages[-1]
                    assert isinstance(last, OfferMessage)
                    assert last.offer_id == op.offer.id

    @invariant()
    def deadlines_are_never_in_the_past(self) -> None:
        deadline = self.core.next_deadline()
        assert deadline is None or deadline > self.d.now

    @invariant()
    def counters_add_up(self) -> None:
        c = self.core.counters
        ended = c["assigned"] - c["claimed"] + c["rejected"] + c["expired"] + c["withdrawn"]
        open_offers = sum(1 for t in self.core._tasks.values()
                          if t.offer is not None and not t.offer.claim)
        # Offers cancelled with their task and offers taken over by a push end without a count.
        assert c["offered"] >= ended + open_offers
        assert c["assigned"] == sum(1 for t in self.assigned_to
                                    if not self.core.task(TaskId(t)).pushed)


TestCore = CoreMachine.TestCase


def test_end_reasons_map_to_event_kinds() -> None:
    for reason in EndReason:
        assert EventKind(reason.value).value == reason.value
