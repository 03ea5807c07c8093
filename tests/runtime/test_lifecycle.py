"""Engine shutdown, and the event stream the host observes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing
from queuetasks.engine import (
    CloseReason,
    Engine,
    EngineConfig,
    EngineNotRunning,
    EventKind,
    EventsLost,
    OfferMessage,
    TaskState,
)

from .helpers import LIMIT, FakeHost, kinds, next_event, op, poll


async def test_shutdown_ends_every_stream_and_later_calls_raise(autojump_clock):
    with trio.fail_after(LIMIT):
        host = FakeHost()
        host.hold_confirm.add("c")
        seen: dict[str, object] = {}

        async def read_until_end(name: str, stream) -> None:
            try:
                while True:
                    await stream.receive()
            except trio.EndOfChannel:
                seen[name] = trio.current_time()

        async def assign_c(engine: Engine) -> None:
            try:
                await engine.assign("c", "t2")
            except EngineNotRunning as exc:
                seen["assign"] = exc

        async with trio.open_nursery() as outer:  # readers and callers outlive the engine
            async with trio.open_nursery() as inner:
                engine: Engine = await inner.start(Engine(EngineConfig(), host).run)
                assert engine.running
                offered = await engine.open_stream(op("b"))
                engine.add_task("t1")
                confirming = await engine.open_stream(op("c"))
                engine.add_task("t2")
                waiting = await engine.open_stream(op("a"))
                outer.start_soon(read_until_end, "a", waiting)
                outer.start_soon(assign_c, engine)
                await trio.testing.wait_all_tasks_blocked()
                assert host.confirms == [("t2", "c")]
                assert engine.statistics()["open_streams"] == 3
                t0 = trio.current_time()
                inner.cancel_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()

        assert not engine.running
        assert seen["a"] == t0
        assert isinstance(seen["assign"], EngineNotRunning)
        for stream in (waiting, offered, confirming):
            assert stream.close_reason is CloseReason.SHUTDOWN
        msg = await offered.receive()  # what was already sent is still readable
        assert isinstance(msg, OfferMessage)
        assert msg.task_id == "t1"
        with pytest.raises(trio.EndOfChannel):
            await offered.receive()
        assert engine.statistics()["open_streams"] == 0
        assert engine.statistics()["waiting_operators"] == 0

        with pytest.raises(EngineNotRunning):
            await engine.open_stream(op("d"))
        with pytest.raises(EngineNotRunning):
            await engine.assign("b", "t1")
        with pytest.raises(EngineNotRunning):
            await engine.take_free(op("d"))


SYNC_CALLS: dict[str, Callable[[Engine], object]] = {
    "add_task": lambda engine: engine.add_task("new", ttl=5.0),
    "push_task": lambda engine: engine.push_task("new", "d"),
    "cancel_task": lambda engine: engine.cancel_task("t2"),
    "reject": lambda engine: engine.reject("b", "t1"),
    "exit": lambda engine: engine.exit("b"),
}


@pytest.mark.parametrize("call", sorted(SYNC_CALLS))
async def test_sync_calls_after_shutdown_raise(autojump_clock, call):
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine().run)
            await engine.open_stream(op("b"))
            engine.add_task("t1")
            engine.add_task("t2")
            nursery.cancel_scope.cancel()
        before = engine.statistics()
        with pytest.raises(EngineNotRunning):
            SYNC_CALLS[call](engine)
        assert engine.statistics() == before


async def test_events_come_in_order(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        sub = engine.subscribe()
        await engine.open_stream(op("a"))
        b = await engine.open_stream(op("b"))
        t0 = trio.current_time()
        engine.add_task("t1")
        await trio.sleep_until(t0 + 3.0)
        engine.reject("a", "t1")
        await trio.sleep_until(t0 + 5.0)
        offer = await poll(b)
        assert isinstance(offer, OfferMessage)
        await engine.assign("b", "t1")

        got = [await next_event(sub) for _ in range(5)]
        assert kinds(got) == [
            (EventKind.ADDED, "t1", None),
            (EventKind.OFFERED, "t1", "a"),
            (EventKind.REJECTED, "t1", "a"),
            (EventKind.OFFERED, "t1", "b"),
            (EventKind.ASSIGNED, "t1", "b"),
        ]
        assert [e.at - t0 for e in got] == pytest.approx([0.0, 0.0, 3.0, 3.0, 5.0])
        assert got[-1].age == pytest.approx(5.0)
        assert engine.task("t1").state is TaskState.ASSIGNED

        sub.close()  # iteration ends quietly once closed
        assert [e async for e in sub] == []
        assert engine.statistics()["subscribers"] == 0


async def test_slow_subscriber_is_cut_off_not_waited_for(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        slow = engine.subscribe(buffer=2)
        fast = engine.subscribe()
        assert engine.statistics()["subscribers"] == 2
        t0 = trio.current_time()

        for name in ("t1", "t2", "t3"):
            engine.add_task(name)  # synchronous: nobody reads, nothing blocks
        assert trio.current_time() == t0
        assert engine.statistics()["subscribers"] == 1
        assert engine.statistics()["pending_tasks"] == 3

        assert [(await next_event(slow)).task_id for _ in range(2)] == ["t1", "t2"]
        with pytest.raises(EventsLost):
            await next_event(slow)
        assert [(await next_event(fast)).task_id for _ in range(3)] == ["t1", "t2", "t3"]
        assert trio.current_time() == t0
