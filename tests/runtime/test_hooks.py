"""The host's async hooks run at the edges: slow, failing or cancelled ones hurt only their caller
(and the task they were deciding), never other operators."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from queuetasks.engine import (
    AssignmentRefused,
    EndedMessage,
    EndReason,
    EngineConfig,
    EventKind,
    HostHookFailed,
    OfferMessage,
    OperatorStatus,
    Overloaded,
    TabStream,
    TaskState,
)

from .helpers import LIMIT, FakeHost, kinds, op, poll, record


async def test_slow_confirmation_does_not_delay_other_offers(start, nursery, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_confirm.add("a")
        engine = await start(hooks=host)
        a = await engine.open_stream(op("a"))
        b = await engine.open_stream(op("b"))
        engine.add_task("t1")
        offer = await poll(a)
        assert isinstance(offer, OfferMessage)
        t0 = trio.current_time()
        landed: list[float] = []

        async def assign_a() -> None:
            await engine.assign("a", "t1")
            landed.append(trio.current_time())

        nursery.start_soon(assign_a)
        await trio.testing.wait_all_tasks_blocked()
        assert host.confirms == [("t1", "a")]
        assert [(e.operator_id, e.status) for e in engine.queue()] == [
            ("b", OperatorStatus.WAITING), ("a", OperatorStatus.CONFIRMING)]

        engine.add_task("t2")
        got = await poll(b)
        assert isinstance(got, OfferMessage)
        assert got.task_id == "t2"
        await engine.assign("b", "t2")
        assert trio.current_time() == t0
        assert (engine.task("t2").state, engine.task("t2").operator_id) == (
            TaskState.ASSIGNED, "b")
        assert engine.task("t1").state is TaskState.OFFERED
        assert landed == []

        host.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert landed == [t0]
        assert (engine.task("t1").state, engine.task("t1").operator_id) == (
            TaskState.ASSIGNED, "a")
        assert await poll(a) == EndedMessage("t1", offer.offer_id, EndReason.ASSIGNED)


async def test_confirmation_slower_than_hook_timeout_is_refused(start, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.slow_confirm["a"] = 1_000.0
        engine = await start(EngineConfig(hook_timeout=10.0), host)
        events = record(engine)
        a = await engine.open_stream(op("a"))
        engine.add_task("t1")
        offer = await poll(a)
        assert isinstance(offer, OfferMessage)
        t0 = trio.current_time()

        with pytest.raises(AssignmentRefused, match="task t1 was not assigned to operator a"):
            await engine.assign("a", "t1")
        assert trio.current_time() == pytest.approx(t0 + 10.0)
        assert engine.task("t1").state is TaskState.PENDING
        assert await poll(a) == EndedMessage("t1", offer.offer_id, EndReason.WITHDRAWN)
        refused = [e for e in events if e.kind is EventKind.REFUSED]
        assert [(e.task_id, e.operator_id, e.detail) for e in refused] == [
            ("t1", "a", "the host did not confirm within 10.0s")]
        assert refused[0].at == pytest.approx(t0 + 10.0)

        # never offered to him again, but not lost: the next operator gets it
        again = await engine.open_stream(op("a"))
        assert await poll(again) is None
        stats = engine.statistics()
        assert (stats["pending_tasks"], stats["waiting_operators"], stats["open_offers"]) == (
            1, 1, 0)
        b = await engine.open_stream(op("b"))
        got = await poll(b)
        assert isinstance(got, OfferMessage)
        assert got.task_id == "t1"


async def test_slow_can_wait_does_not_block_other_operators(start, nursery, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_wait.add("a")
        engine = await start(EngineConfig(hook_timeout=10.0), host)
        t0 = trio.current_time()
        outcome: list[tuple[float, BaseException]] = []
        done = trio.Event()

        async def open_a() -> None:
            try:
                await engine.open_stream(op("a"))
            except HostHookFailed as exc:
                outcome.append((trio.current_time(), exc))
            done.set()

        nursery.start_soon(open_a)
        await trio.testing.wait_all_tasks_blocked()
        assert host.waits == ["a"]

        b = await engine.open_stream(op("b"))
        engine.add_task("t1")
        got = await poll(b)
        assert isinstance(got, OfferMessage)
        assert got.task_id == "t1"
        assert trio.current_time() == t0

        await done.wait()
        assert [(at, type(exc)) for at, exc in outcome] == [
            (pytest.approx(t0 + 10.0), HostHookFailed)]
        assert "can_wait did not answer within 10.0s for operator a" in str(outcome[0][1])
        assert [e.operator_id for e in engine.queue()] == ["b"]
        assert engine.statistics()["open_streams"] == 1


async def test_raising_hooks_leave_state_consistent(start, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.fail_confirm.add("a")
        host.fail_wait.add("c")
        engine = await start(hooks=host)
        events = record(engine)
        a = await engine.open_stream(op("a"))
        engine.add_task("t1")
        offer = await poll(a)
        assert isinstance(offer, OfferMessage)
        t0 = trio.current_time()

        with pytest.raises(AssignmentRefused, match="confirm_assignment failed: RuntimeError"):
            await engine.assign("a", "t1")
        assert trio.current_time() == t0
        assert engine.task("t1").state is TaskState.PENDING
        assert await poll(a) == EndedMessage("t1", offer.offer_id, EndReason.WITHDRAWN)
        assert kinds(events)[-2:] == [
            (EventKind.REFUSED, "t1", "a"), (EventKind.WITHDRAWN, "t1", "a")]
        stats = engine.statistics()
        assert (stats["pending_tasks"], stats["open_offers"], stats["total_refused"]) == (1, 0, 1)

        before = engine.statistics()
        with pytest.raises(HostHookFailed, match="can_wait failed for operator c"):
            await engine.open_stream(op("c"))
        assert engine.statistics() == before
        assert engine.queue() == []


async def test_cancelled_assign_caller_still_lands_the_confirmation(
    start, nursery, autojump_clock
):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_confirm.add("a")
        engine = await start(hooks=host)
        a = await engine.open_stream(op("a"))
        engine.add_task("t1")
        offer = await poll(a)
        assert isinstance(offer, OfferMessage)
        returned: list[bool] = []
        caught: list[bool] = []

        async def caller(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await engine.assign("a", "t1")
                returned.append(True)
            caught.append(scope.cancelled_caught)

        scope = await nursery.start(caller)
        await trio.testing.wait_all_tasks_blocked()
        assert host.confirms == [("t1", "a")]
        scope.cancel()  # the HTTP client went away
        await trio.testing.wait_all_tasks_blocked()
        assert (returned, caught) == ([], [True])
        assert engine.task("t1").state is TaskState.OFFERED

        host.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert host.confirmed == [("t1", "a")]
        info = engine.task("t1")
        assert (info.state, info.operator_id) == (TaskState.ASSIGNED, "a")
        assert await poll(a) == EndedMessage("t1", offer.offer_id, EndReason.ASSIGNED)
        assert engine.statistics()["open_offers"] == 0


async def test_cancelled_open_stream_changes_nothing(start, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_wait.add("a")
        engine = await start(EngineConfig(hook_timeout=10.0), host)
        before = engine.statistics()
        t0 = trio.current_time()
        with trio.move_on_after(1.0) as scope:
            await engine.open_stream(op("a"))
        assert scope.cancelled_caught
        assert trio.current_time() == pytest.approx(t0 + 1.0)
        assert host.waits == ["a"]

        host.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert engine.statistics() == before
        assert engine.queue() == []
        engine.add_task("t1")
        assert engine.task("t1").state is TaskState.PENDING


async def test_max_streams_refuses_the_next_stream(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start(EngineConfig(max_streams=1))
        await engine.open_stream(op("a"))
        with pytest.raises(Overloaded):
            await engine.open_stream(op("b"))
        assert engine.statistics()["open_streams"] == 1


async def test_max_streams_holds_for_concurrent_opens(start, nursery, autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_wait.update({"a", "b"})
        engine = await start(EngineConfig(max_streams=1), host)
        results: list[TabStream | Overloaded] = []

        async def open_one(name: str) -> None:
            try:
                results.append(await engine.open_stream(op(name)))
            except Overloaded as exc:
                results.append(exc)

        nursery.start_soon(open_one, "a")
        nursery.start_soon(open_one, "b")
        await trio.testing.wait_all_tasks_blocked()
        host.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(results) == 2
        assert engine.statistics()["open_streams"] == 1
        assert sum(isinstance(r, Overloaded) for r in results) == 1


@pytest.mark.parametrize("call", ["open_stream", "take_free"])
async def test_async_calls_checkpoint_with_default_hooks(start, autojump_clock, call):
    with trio.fail_after(LIMIT):
        engine = await start()
        with trio.testing.assert_checkpoints():
            if call == "open_stream":
                await engine.open_stream(op("a"))
            else:
                assert await engine.take_free(op("a")) is None
