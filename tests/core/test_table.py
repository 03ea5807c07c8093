"""Table tests of the core: (state, input) -> (state, effects), misuse included."""

from __future__ import annotations

import ast
import pathlib

import pytest
from queuetasks.engine import (
    CoreConfig,
    EndedMessage,
    EndReason,
    InvalidInput,
    NotOfferedToYou,
    OfferMessage,
    Operator,
    OperatorId,
    OperatorStatus,
    TaskClosed,
    TaskExists,
    TaskId,
    TaskInfo,
    TaskNotFound,
    TaskSpec,
    TaskState,
)

from .harness import Driver

ENGINE = pathlib.Path(__file__).resolve().parents[2] / "engine"


def state(d: Driver, task_id: str) -> TaskState:
    return d.core.task(TaskId(task_id)).state


# ---------------------------------------------------------------- sans-IO


@pytest.mark.parametrize("module", ["_core.py", "_index.py", "_effects.py", "_types.py",
                                    "_errors.py"])
def test_core_modules_do_no_io(module: str) -> None:
    tree = ast.parse((ENGINE / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "time", "random", "asyncio", "logging", "socket", "os",
                           "threading", "anyio", "datetime"}


# ---------------------------------------------------------------- task added


def test_task_added_with_nobody_waiting_stays_pending() -> None:
    d = Driver()
    d.add("t1")
    assert state(d, "t1") is TaskState.PENDING
    assert d.core.next_deadline() is None


def test_task_added_goes_to_the_longest_waiting_operator() -> None:
    d = Driver()
    a, b = d.open("a"), d.open("b")
    d.add("t1")
    assert d.offered(a) == "t1"
    assert d.offered(b) is None
    assert state(d, "t1") is TaskState.OFFERED
    assert d.core.next_deadline() == 40.0


def test_task_goes_to_first_eligible_operator_by_pool_and_grade() -> None:
    d = Driver()
    junior = d.open("junior", grade=0, pools=["loans"])
    other_pool = d.open("other", grade=5, pools=["support"])
    senior = d.open("senior", grade=3, pools=["loans", "support"])
    d.add("t1", pool="loans", min_grade=2)
    assert d.offered(senior) == "t1"
    assert d.offered(junior) is None
    assert d.offered(other_pool) is None


def test_duplicate_task_id_is_refused_and_changes_nothing() -> None:
    d = Driver()
    d.add("t1", priority=1)
    with pytest.raises(TaskExists):
        d.add("t1", priority=9)
    assert d.core.task(TaskId("t1")).priority == 1


@pytest.mark.parametrize("bad", [
    {"priority": 1.5}, {"priority": True}, {"min_grade": "2"}, {"pool": ""}, {"ttl": 0},
    {"ttl": -1.0}, {"ttl": float("inf")}, {"ttl": float("nan")},
])
def test_malformed_task_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        TaskSpec(TaskId("t1"), **bad)  # type: ignore[arg-type]


def test_empty_ids_are_refused() -> None:
    with pytest.raises(InvalidInput):
        TaskSpec(TaskId(""))
    with pytest.raises(InvalidInput):
        Operator(OperatorId(""))
    with pytest.raises(InvalidInput):
        Operator(OperatorId("a"), pools=frozenset())


# ---------------------------------------------------------------- operator arrives


def test_arriving_operator_gets_highest_priority_then_oldest() -> None:
    d = Driver()
    d.add("low-old", priority=0)
    d.add("high-new", priority=5)
    d.add("high-newer", priority=5)
    a = d.open("a")
    assert d.offered(a) == "high-new"


def test_operator_in_several_tabs_gets_one_offer_in_every_tab() -> None:
    d = Driver()
    tabs = [d.open("a") for _ in range(3)]
    d.add("t1")
    d.add("t2")
    assert [d.offered(t) for t in tabs] == ["t1"] * 3
    assert state(d, "t2") is TaskState.PENDING


def test_new_tab_during_offer_gets_the_same_offer_with_the_same_deadline() -> None:
    d = Driver()
    a = d.open("a")
    d.add("t1")
    d.add("t2")
    d.advance(15)
    again = d.open("a")
    first, second = d.last(a), d.last(again)
    assert isinstance(first, OfferMessage)
    assert first == second
    assert first.deadline == 40.0
    assert state(d, "t2") is TaskState.PENDING


def test_reconnect_during_offer_resumes_it_not_a_second_task() -> None:
    d = Driver()
    a = d.open("a")
    d.add("t1")
    d.add("t2")
    d.close(a)
    d.advance(10)
    back = d.open("a")
    assert d.offered(back) == "t1"
    assert state(d, "t2") is TaskState.PENDING


def test_waiting_operator_whose_last_tab_closes_leaves_the_queue_at_once() -> None:
    d = Driver()
    a1, a2 = d.open("a"), d.open("a")
    d.close(a1)
    assert [e.operator_id for e in d.core.queue()] == ["a"]
    d.close(a2)
    assert d.core.queue() == []
    d.add("t1")
    assert state(d, "t1") is TaskState.PENDING


def test_operator_keeps_his_place_while_another_tab_stays_open() -> None:
    d = Driver()
    a1 = d.open("a")
    d.open("b")
    d.open("a")
    d.close(a1)
    d.add("t1")
    assert d.core.offer_of(OperatorId("a")) == TaskId("t1")


def test_changed_attributes_requeue_the_operator_at_the_back() -> None:
    d = Driver()
    d.open("a", pools=["x"])
    d.open("b", pools=["x"])
    d.open("a", pools=["x", "y"])
    d.add("t1", pool="x")
    assert d.core.offer_of(OperatorId("b")) == TaskId("t1")


# ---------------------------------------------------------------- assign / confirm


def test_assign_confirmed_ends_offer_in_every_tab() -> None:
    d = Driver()
    tabs = [d.open("a"), d.open("a")]
    d.add("t1")
    d.assign("a", "t1")
    info = d.core.task(TaskId("t1"))
    assert info.state is TaskState.ASSIGNED
    assert info.operator_id == "a"
    for tab in tabs:
        assert d.last(tab) == EndedMessage(TaskId("t1"), 1, EndReason.ASSIGNED)
        assert not tab.open
    assert d.core.queue() == []


def test_offer_timeout_is_suspended_while_the_host_confirms() -> None:
    d = Driver()
    d.open("a")
    d.add("t1")
    d.run(d.core.assign(OperatorId("a"), TaskId("t1"), d.now))
    d.advance(100)
    assert state(d, "t1") is TaskState.OFFERED
    assert d.core.queue()[0].status is OperatorStatus.CONFIRMING
    d.answer("a", "t1", ok=True)
    assert state(d, "t1") is TaskState.ASSIGNED


def test_host_refusal_returns_task_to_pending_and_never_offers_it_to_him_again() -> None:
    d = Driver()
    a = d.open("a")
    d.add("t1")
    d.assign("a", "t1", ok=False)
    assert state(d, "t1") is TaskState.PENDING
    assert d.last(a) == EndedMessage(TaskId("t1"), 1, EndReason.WITHDRAWN)
    a2 = d.open("a")
    assert d.offered(a2) is None
    b = d.open("b")
    assert d.offered(b) == "t1"


@pytest.mark.parametrize("case", ["someone-else", "unknown", "after-expiry", "twice",
                                  "after-reject", "pushed", "while-confirming"])
def test_assign_or_reject_not_offered_to_caller_is_403_and_changes_nothing(case: str) -> None:
    d = Driver()
    d.open("a")
    d.open("b")
    d.add("t1")  # offered to a
    caller, task = "b", "t1"
    if case == "unknown":
        caller, task = "a", "nope"
    elif case == "after-expiry":
        d.advance(40)  # expired for a, now offered to b
        caller = "a"
    elif case == "twice":
        d.assign("a", "t1")
        caller = "a"
    elif case == "after-reject":
        d.reject("a", "t1")
        caller = "a"
    elif case == "pushed":
        d.push("p1", "a")
        caller, task = "a", "p1"
    elif case == "while-confirming":
        d.run(d.core.assign(OperatorId("a"), TaskId("t1"), d.now))
        caller = "a"
    before = (d.core.statistics(), d.core.queue())
    for call in (d.core.assign, d.core.reject):
        with pytest.raises(NotOfferedToYou):
            call(OperatorId(caller), TaskId(task), d.now)
    assert (d.core.statistics(), d.core.queue()) == before


# ---------------------------------------------------------------- reject / expire / grace


def test_reject_goes_to_next_operator_and_not_back_to_him() -> None:
    d = Driver()
    a, b = d.open("a"), d.open("b")
    d.add("t1")
    d.reject("a", "t1")
    assert d.last(a) == EndedMessage(TaskId("t1"), 1, EndReason.REJECTED)
    assert not a.open
    assert d.offered(b) == "t1"
    d.reject("b", "t1")
    d.open("a")
    d.open("b")
    assert state(d, "t1") is TaskState.PENDING
    c = d.open("c")
    assert d.offered(c) == "t1"


def test_unanswered_offer_expires_at_the_timeout_and_goes_on() -> None:
    d = Driver(CoreConfig(offer_timeout=40))
    a, b = d.open("a"), d.open("b")
    d.add("t1")
    d.advance(39.999)
    assert d.offered(a) == "t1"
    d.advance(0.001)
    assert d.last(a) == EndedMessage(TaskId("t1"), 1, EndReason.EXPIRED)
    assert d.offered(b) == "t1"
    assert d.core.next_deadline() == 80.0


def test_disconnect_grace_withdraws_offer_of_an_operator_gone() -> None:
    d = Driver(CoreConfig(offer_timeout=40, disconnect_grace=5))
    a = d.open("a")
    d.add("t1")
    d.advance(1)
    d.close(a)
    assert d.core.next_deadline() == 6.0
    d.advance(5)
    assert state(d, "t1") is TaskState.PENDING
    assert d.events[-1].kind.value == "withdrawn"


def test_tab_back_within_grace_keeps_the_offer() -> None:
    d = Driver(CoreConfig(offer_timeout=40, disconnect_grace=5))
    a = d.open("a")
    d.add("t1")
    d.close(a)
    d.advance(4)
    back = d.open("a")
    d.advance(10)
    assert d.offered(back) == "t1"


def test_zero_grace_withdraws_at_once() -> None:
    d = Driver(CoreConfig(disconnect_grace=0))
    a = d.open("a")
    d.add("t1")
    d.close(a)
    assert state(d, "t1") is TaskState.PENDING


# ---------------------------------------------------------------- cancel / ttl


def test_cancel_offered_task_tells_every_tab() -> None:
    d = Driver()
    tabs = [d.open("a"), d.open("a")]
    d.add("t1")
    d.cancel("t1")
    assert all(d.last(t) == EndedMessage(TaskId("t1"), 1, EndReason.CANCELLED) for t in tabs)
    assert state(d, "t1") is TaskState.CANCELLED
    with pytest.raises(TaskClosed):
        d.cancel("t1")
    with pytest.raises(TaskNotFound):
        d.cancel("never")


def test_cancel_assigned_task_is_refused() -> None:
    d = Driver()
    d.open("a")
    d.add("t1")
    d.assign("a", "t1")
    with pytest.raises(TaskClosed):
        d.cancel("t1")


def test_ttl_cancels_a_pending_task_but_not_an_open_offer() -> None:
    d = Driver()
    d.add("t1", ttl=10.0)
    d.advance(10)
    assert d.core.task(TaskId("t1")).end_reason == "ttl"
    a = d.open("a")
    d.add("t2", ttl=10.0)
    d.advance(15)
    assert d.offered(a) == "t2"
    d.reject("a", "t2")  # back from the offer after its ttl: cancelled
    assert state(d, "t2") is TaskState.CANCELLED


# ---------------------------------------------------------------- push


def test_push_to_operator_not_connected_is_kept_until_he_connects() -> None:
    d = Driver()
    d.push("p1", "a")
    assert state(d, "p1") is TaskState.ASSIGNED
    a = d.open("a")
    last = d.last(a)
    assert isinstance(last, OfferMessage)
    assert last.assigned
    assert last.task_id == "p1"
    assert not a.open
    d.deliver()
    a2 = d.open("a")
    assert a2.messages == []
    assert a2.open


def test_undelivered_push_goes_to_the_next_tab() -> None:
    d = Driver()
    d.push("p1", "a")
    a = d.open("a")
    d.close(a)  # the write never happened
    a2 = d.open("a")
    assert isinstance(d.last(a2), OfferMessage)


def test_push_to_operator_with_open_offer_waits_for_the_offer_to_end() -> None:
    d = Driver()
    a = d.open("a")
    d.add("t1")
    d.push("p1", "a")
    assert d.offered(a) == "t1"
    d.reject("a", "t1")
    a2 = d.open("a")
    last = d.last(a2)
    assert isinstance(last, OfferMessage)
    assert last.task_id == "p1"
    assert last.assigned


def test_push_takes_over_a_task_offered_to_someone_else() -> None:
    d = Driver()
    b = d.open("b")
    d.add("t1")
    d.push("t1", "a")
    assert d.last(b) == EndedMessage(TaskId("t1"), 1, EndReason.WITHDRAWN)
    assert d.core.task(TaskId("t1")).operator_id == "a"
    with pytest.raises(TaskClosed):
        d.push("t1", "c")


def test_operator_with_undelivered_push_is_not_offered_tasks() -> None:
    d = Driver()
    d.push("p1", "a")
    a = d.open("a")
    d.add("t1")
    assert state(d, "t1") is TaskState.PENDING
    d.deliver()
    a2 = d.open("a")
    assert d.offered(a2) == "t1"
    assert not a.open


# ---------------------------------------------------------------- take-free


def test_take_free_assigns_best_task_at_once_even_when_others_wait() -> None:
    d = Driver()
    d.open("waiting-for-y", pools=["y"])
    d.add("low", priority=1)
    d.add("high", priority=2)
    assert d.take_free("a") == "high"
    assert d.core.task(TaskId("high")).operator_id == "a"
    assert d.core.task(TaskId("high")).state is TaskState.ASSIGNED


def test_take_free_gets_a_task_he_rejected_before() -> None:
    d = Driver()
    d.open("a")
    d.add("t1")
    d.reject("a", "t1")
    assert d.take_free("a") == "t1"


def test_take_free_is_null_while_he_waits_or_holds_an_offer() -> None:
    d = Driver()
    a = d.open("a")
    d.add("t1", pool="other")
    assert d.take_free("a", pools=["other"]) is None
    d.close(a)
    assert d.take_free("a", pools=["other"]) == "t1"


def test_take_free_refused_by_host_leaves_task_pending() -> None:
    d = Driver()
    d.add("t1")
    assert d.take_free("a", ok=False) == "t1"
    assert state(d, "t1") is TaskState.PENDING
    task_id, fx = d.core.take_free(Operator(OperatorId("a")), d.now, frozenset({TaskId("t1")}))
    assert task_id is None
    assert fx == []


# ---------------------------------------------------------------- exit, predicate, queue


def test_exit_closes_every_tab_and_withdraws_the_offer() -> None:
    d = Driver()
    tabs = [d.open("a"), d.open("a")]
    b = d.open("b")
    d.add("t1")
    d.exit("a")
    assert not any(t.open for t in tabs)
    assert d.offered(b) == "t1"
    d.exit("nobody")


def test_predicate_is_applied_on_top_of_the_index() -> None:
    def no_vip_for_a(task: TaskInfo, op: Operator) -> bool:
        return not (op.id == "a" and task.priority >= 9)

    d = Driver(CoreConfig(predicate=no_vip_for_a))
    a, b = d.open("a"), d.open("b")
    d.add("vip", priority=9)
    assert d.offered(a) is None
    assert d.offered(b) == "vip"
    d.add("plain")
    assert d.offered(a) == "plain"


def test_queue_lists_waiting_operators_in_order_then_busy_ones() -> None:
    d = Driver()
    d.open("a")
    d.advance(1)
    d.open("b")
    d.open("c")
    d.add("t1")
    entries = d.core.queue()
    assert [(e.operator_id, e.status) for e in entries] == [
        ("b", OperatorStatus.WAITING), ("c", OperatorStatus.WAITING),
        ("a", OperatorStatus.OFFERED)]
    assert entries[-1].task_id == "t1"


def test_ended_tasks_are_forgotten_beyond_retention() -> None:
    d = Driver(CoreConfig(retain_ended=2))
    for i in range(3):
        d.add(f"t{i}")
        d.cancel(f"t{i}")
    with pytest.raises(TaskNotFound):
        d.core.task(TaskId("t0"))
    assert d.core.task(TaskId("t2")).state is TaskState.CANCELLED
