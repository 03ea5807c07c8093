"""Offer timeout, disconnect grace and task time-to-live land at exact virtual times."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from queuetasks.engine import (
    CloseReason,
    EndedMessage,
    EndReason,
    EngineConfig,
    EventKind,
    OfferMessage,
    TaskState,
)

from .helpers import LIMIT, kinds, next_event, op, poll, record


async def test_unanswered_offer_expires_at_40s_and_goes_to_next_operator(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        a = await engine.open_stream(op("a"))
        b = await engine.open_stream(op("b"))
        t0 = trio.current_time()
        engine.add_task("t1")

        first = await a.receive()
        assert first == OfferMessage("t1", first.offer_id, False, pytest.approx(t0 + 40.0), None)
        assert await poll(b) is None

        ended = await a.receive()
        assert trio.current_time() == pytest.approx(t0 + 40.0)
        assert ended == EndedMessage("t1", first.offer_id, EndReason.EXPIRED)
        with pytest.raises(trio.EndOfChannel):
            await a.receive()
        assert a.close_reason is CloseReason.OFFER_ENDED

        second = await poll(b)
        assert isinstance(second, OfferMessage)
        assert (second.task_id, second.assigned) == ("t1", False)
        assert second.deadline == pytest.approx(t0 + 80.0)
        assert second.offer_id != first.offer_id
        assert engine.task("t1").state is TaskState.OFFERED
        assert engine.task("t1").operator_id == "b"


async def test_expiry_events_in_order_at_exact_times(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        sub = engine.subscribe()
        await engine.open_stream(op("a"))
        await engine.open_stream(op("b"))
        t0 = trio.current_time()
        engine.add_task("t1")
        got = [await next_event(sub) for _ in range(5)]
        assert kinds(got) == [
            (EventKind.ADDED, "t1", None),
            (EventKind.OFFERED, "t1", "a"),
            (EventKind.EXPIRED, "t1", "a"),
            (EventKind.OFFERED, "t1", "b"),
            (EventKind.EXPIRED, "t1", "b"),
        ]
        assert [e.at - t0 for e in got] == pytest.approx([0.0, 0.0, 40.0, 40.0, 80.0])
        assert engine.task("t1").state is TaskState.PENDING


async def test_disconnect_grace_withdraws_and_offers_next(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start(EngineConfig(disconnect_grace=10.0))
        sub = engine.subscribe()
        a = await engine.open_stream(op("a"))
        b = await engine.open_stream(op("b"))
        t0 = trio.current_time()
        engine.add_task("t1")
        assert [(await next_event(sub)).kind for _ in range(2)] == [
            EventKind.ADDED, EventKind.OFFERED]
        a.close()
        # still offered to him during the grace; his record stays, without tabs
        assert engine.task("t1").operator_id == "a"
        assert engine.statistics()["open_offers"] == 1

        withdrawn = await next_event(sub)
        assert (withdrawn.kind, withdrawn.operator_id, withdrawn.detail) == (
            EventKind.WITHDRAWN, "a", "disconnected")
        assert withdrawn.at == pytest.approx(t0 + 10.0)
        assert trio.current_time() == pytest.approx(t0 + 10.0)

        offered = await next_event(sub)
        assert (offered.kind, offered.operator_id) == (EventKind.OFFERED, "b")
        assert offered.at == pytest.approx(t0 + 10.0)
        msg = await poll(b)
        assert isinstance(msg, OfferMessage)
        assert msg.task_id == "t1"
        assert msg.deadline == pytest.approx(t0 + 50.0)


async def test_reopening_within_grace_resumes_same_offer(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start(EngineConfig(disconnect_grace=10.0))
        events = record(engine)
        a = await engine.open_stream(op("a"))
        await engine.open_stream(op("b"))
        t0 = trio.current_time()
        engine.add_task("t1")
        first = await a.receive()
        a.close()

        await trio.sleep_until(t0 + 9.0)
        again = await engine.open_stream(op("a"))
        resumed = await poll(again)
        assert resumed == first  # same task, same offer id, same deadline
        assert await poll(again) is None

        # the grace would have ended at t0 + 10: nothing happens then
        ended = await again.receive()
        assert trio.current_time() == pytest.approx(t0 + 40.0)
        assert ended == EndedMessage("t1", first.offer_id, EndReason.EXPIRED)
        assert EventKind.WITHDRAWN not in [e.kind for e in events]
        assert kinds(events)[:3] == [
            (EventKind.ADDED, "t1", None),
            (EventKind.OFFERED, "t1", "a"),
            (EventKind.EXPIRED, "t1", "a"),
        ]


async def test_default_grace_is_the_offer_timeout(start, autojump_clock):
    assert EngineConfig().disconnect_grace is None
    with trio.fail_after(LIMIT):
        engine = await start()
        sub = engine.subscribe()
        a = await engine.open_stream(op("a"))
        t0 = trio.current_time()
        engine.add_task("t1")
        first = await a.receive()
        a.close()  # gone at the very moment of the offer

        # a shorter grace would have withdrawn it by now; he can still come back at t0 + 39
        await trio.sleep_until(t0 + 39.0)
        assert engine.task("t1").operator_id == "a"
        back = await engine.open_stream(op("a"))
        assert await poll(back) == first
        back.close()

        events = [await next_event(sub) for _ in range(3)]
        assert [e.kind for e in events] == [
            EventKind.ADDED, EventKind.OFFERED, EventKind.EXPIRED]
        assert events[2].at == pytest.approx(t0 + 40.0)
        assert engine.task("t1").state is TaskState.PENDING


async def test_pending_task_ttl_cancels_at_exact_time(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        sub = engine.subscribe()
        t0 = trio.current_time()
        engine.add_task("t1", ttl=5.0)
        assert (await next_event(sub)).kind is EventKind.ADDED
        cancelled = await next_event(sub)
        assert trio.current_time() == pytest.approx(t0 + 5.0)
        assert (cancelled.kind, cancelled.task_id, cancelled.detail) == (
            EventKind.CANCELLED, "t1", "ttl")
        assert cancelled.at == pytest.approx(t0 + 5.0)
        info = engine.task("t1")
        assert (info.state, info.end_reason) == (TaskState.CANCELLED, "ttl")
        assert engine.statistics()["pending_tasks"] == 0

        # an operator who arrives later gets nothing
        late = await engine.open_stream(op("a"))
        assert await poll(late) is None


async def test_ttl_still_applies_after_an_offer_ends_early(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        events = record(engine)
        await engine.open_stream(op("a"))
        t0 = trio.current_time()
        engine.add_task("t1", ttl=5.0)
        await trio.sleep_until(t0 + 1.0)
        engine.reject("a", "t1")
        assert engine.task("t1").state is TaskState.PENDING
        await trio.sleep_until(t0 + 6.0)
        assert (engine.task("t1").state, engine.task("t1").end_reason) == (
            TaskState.CANCELLED, "ttl")
        cancelled = [e for e in events if e.kind is EventKind.CANCELLED]
        assert [e.at for e in cancelled] == [pytest.approx(t0 + 5.0)]
