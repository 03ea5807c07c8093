"""Tabs and streams: leaving the queue, several tabs, reconnects, pushed tasks."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from queuetasks.engine import (
    CloseReason,
    EndedMessage,
    EndReason,
    EventKind,
    OfferMessage,
    OperatorStatus,
    TaskState,
)

from .helpers import LIMIT, kinds, op, poll, record


async def test_closed_last_tab_leaves_the_queue_at_once(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        events = record(engine)
        one = await engine.open_stream(op("a"))
        two = await engine.open_stream(op("a"))
        assert [(e.operator_id, e.status, e.tabs) for e in engine.queue()] == [
            ("a", OperatorStatus.WAITING, 2)]
        t0 = trio.current_time()

        one.close()
        assert [(e.operator_id, e.tabs) for e in engine.queue()] == [("a", 1)]
        assert engine.statistics()["waiting_operators"] == 1

        two.close()
        assert trio.current_time() == t0
        assert engine.queue() == []
        stats = engine.statistics()
        assert (stats["waiting_operators"], stats["open_streams"], stats["open_tabs"]) == (0, 0, 0)

        engine.add_task("t1")
        assert engine.task("t1").state is TaskState.PENDING
        assert engine.statistics()["pending_tasks"] == 1
        await trio.testing.wait_all_tasks_blocked()
        assert engine.task("t1").state is TaskState.PENDING
        assert kinds(events) == [(EventKind.ADDED, "t1", None)]
        assert trio.current_time() == t0


@pytest.mark.parametrize("how", ["assign", "reject"])
async def test_three_tabs_share_one_offer_and_all_learn_its_end(start, autojump_clock, how):
    with trio.fail_after(LIMIT):
        engine = await start()
        tabs = [await engine.open_stream(op("a")) for _ in range(3)]
        engine.add_task("t1")
        engine.add_task("t2")

        offers = [await poll(tab) for tab in tabs]
        assert all(isinstance(m, OfferMessage) and m.task_id == "t1" for m in offers)
        assert len({(m.task_id, m.offer_id, m.deadline) for m in offers}) == 1
        assert [await poll(tab) for tab in tabs] == [None, None, None]
        stats = engine.statistics()
        assert (stats["open_offers"], stats["pending_tasks"], stats["open_streams"]) == (1, 1, 3)

        if how == "assign":
            await engine.assign("a", "t1")
            reason = EndReason.ASSIGNED
            assert engine.task("t1").state is TaskState.ASSIGNED
            assert engine.task("t1").operator_id == "a"
        else:
            engine.reject("a", "t1")
            reason = EndReason.REJECTED
            assert engine.task("t1").state is TaskState.PENDING

        expected = EndedMessage("t1", offers[0].offer_id, reason)
        for tab in tabs:
            assert await tab.receive() == expected
            with pytest.raises(trio.EndOfChannel):
                await tab.receive()
            assert tab.close_reason is CloseReason.OFFER_ENDED
            tab.close()  # what the web layer's finally does: harmless now
        assert engine.statistics()["open_streams"] == 0
        assert engine.queue() == []


async def test_reconnect_during_offer_resumes_it_never_a_second_task(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        first_tab = await engine.open_stream(op("a"))
        t0 = trio.current_time()
        for name in ("t1", "t2", "t3"):
            engine.add_task(name)
        offer = await poll(first_tab)
        assert isinstance(offer, OfferMessage)
        assert offer.task_id == "t1"

        # a second tab while the first is open
        await trio.sleep_until(t0 + 15.0)
        second_tab = await engine.open_stream(op("a"))
        assert await poll(second_tab) == offer
        assert offer.deadline is not None
        assert offer.deadline - trio.current_time() == pytest.approx(25.0)

        # every tab gone, then a reconnect (the browser's EventSource retry)
        first_tab.close()
        second_tab.close()
        await trio.sleep_until(t0 + 30.0)
        third_tab = await engine.open_stream(op("a"))
        assert await poll(third_tab) == offer
        assert await poll(third_tab) is None
        assert [(e.operator_id, e.status, e.task_id) for e in engine.queue()] == [
            ("a", OperatorStatus.OFFERED, "t1")]
        stats = engine.statistics()
        assert (stats["open_offers"], stats["pending_tasks"], stats["total_offered"]) == (1, 2, 1)
        assert engine.task("t2").state is TaskState.PENDING

        # the resumed offer still ends at its own deadline
        ended = await third_tab.receive()
        assert trio.current_time() == pytest.approx(t0 + 40.0)
        assert ended == EndedMessage("t1", offer.offer_id, EndReason.EXPIRED)


async def test_push_to_absent_operator_is_delivered_when_he_opens_a_tab(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        events = record(engine)
        engine.push_task("p1", "a", payload={"kind": "call"})
        info = engine.task("p1")
        assert (info.state, info.operator_id, info.pushed) == (TaskState.ASSIGNED, "a", True)
        await trio.testing.wait_all_tasks_blocked()

        stream = await engine.open_stream(op("a"))
        msg = await stream.receive()
        assert msg == OfferMessage("p1", msg.offer_id, True, None, {"kind": "call"})
        assert EventKind.DELIVERED not in [e.kind for e in events]
        stream.delivered(msg)
        assert kinds(events)[-1] == (EventKind.DELIVERED, "p1", "a")
        with pytest.raises(trio.EndOfChannel):
            await stream.receive()
        assert stream.close_reason is CloseReason.PUSHED
        stream.close()

        # delivered once: the next tab just waits
        again = await engine.open_stream(op("a"))
        assert await poll(again) is None
        assert [(e.operator_id, e.status) for e in engine.queue()] == [
            ("a", OperatorStatus.WAITING)]


async def test_push_not_written_goes_to_the_next_tab(start, autojump_clock):
    with trio.fail_after(LIMIT):
        engine = await start()
        engine.push_task("p1", "a")
        lost = await engine.open_stream(op("a"))
        msg = await lost.receive()
        assert isinstance(msg, OfferMessage)
        assert msg.assigned
        lost.close()  # the connection broke before the write

        retry = await engine.open_stream(op("a"))
        resent = await poll(retry)
        assert resent == msg
        assert resent is not None
        retry.delivered(resent)
        with pytest.raises(trio.EndOfChannel):
            await retry.receive()
        assert engine.statistics()["operators"] == 0
