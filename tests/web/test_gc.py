"""The standalone server's garbage-collector pacing (web/_gc.py), on trio's virtual clock."""

from __future__ import annotations

import gc
import logging

import pytest
import trio
from queuetasks.engine import Engine
from queuetasks.web import WebConfig
from queuetasks.web._config import ConfigError, load
from queuetasks.web._gc import GcPacer, GcPauses
from queuetasks.web._metrics import Metrics


@pytest.fixture
def fake_gc(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record collections and freezes instead of doing them (the test process stays as is)."""
    calls: list[object] = []
    monkeypatch.setattr(gc, "collect", lambda generation=2: calls.append(generation) or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    return calls


async def test_pacer_collects_on_a_clock(fake_gc: list[object], autojump_clock) -> None:
    pacer = GcPacer(young_interval=0.1, middle_every=5, full_interval=0.95)
    was_enabled = gc.isenabled()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(pacer.run)
        assert fake_gc == [2, "freeze"]  # start-up objects collected, then frozen
        assert not gc.isenabled()  # no collection on allocation counts while it runs
        await trio.sleep(1.05)
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(1.05)
    # Ticks 1-10 at 0.1 s: generation 1 on every 5th, the full one once 0.95 s are up.
    assert fake_gc[2:] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 2]
    assert pacer.collections == [8, 1, 1]
    assert gc.isenabled() == was_enabled  # cancelled: automatic collection is back


async def test_pacer_leaves_a_disabled_collector_disabled(fake_gc: list[object],
                                                          autojump_clock) -> None:
    gc.disable()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(GcPacer().run)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pacer_rejects_bad_settings() -> None:
    for kwargs in ({"young_interval": 0}, {"middle_every": 0}, {"full_interval": -1}):
        with pytest.raises(ValueError, match="positive"):
            GcPacer(**kwargs)  # type: ignore[arg-type]


def test_pauses_are_timed_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, float, int]] = []
    garbage: list[object] = []
    garbage.append(garbage)  # a cycle only the collector frees
    del garbage
    with caplog.at_level(logging.WARNING, "queuetasks.web"), \
            GcPauses(lambda g, s, n: seen.append((g, s, n)), warn_after=0.0) as pauses:
        gc.collect()
    assert [g for g, _, _ in seen] == [2]
    assert seen[0][1] >= 0
    assert seen[0][2] >= 1
    assert "generation 2 collection paused the server" in caplog.text
    assert pauses._callback not in gc.callbacks  # removed on exit
    gc.collect()
    assert len(seen) == 1


def test_a_failing_observer_does_not_break_collection(caplog: pytest.LogCaptureFixture) -> None:
    def broken(generation: int, seconds: float, collected: int) -> None:
        raise RuntimeError("metrics are down")

    with caplog.at_level(logging.ERROR, "queuetasks.web"), GcPauses(broken):
        gc.collect()
    assert "gc pause observer failed" in caplog.text


def test_gc_pause_metric() -> None:
    metrics = Metrics(Engine())
    metrics.observe_gc_pause(1, 0.3, 10)
    text = metrics.render().decode()
    assert 'queuetasks_gc_pause_seconds_bucket{generation="1",le="0.5"} 1.0' in text
    assert 'queuetasks_gc_pause_seconds_count{generation="2"} 0.0' in text


def test_full_interval_setting() -> None:
    assert WebConfig().gc_full_interval == 600.0
    assert load({"gc_full_interval": "120"}, env={}).gc_full_interval == 120.0
    assert load(env={"QUEUETASKS_GC_FULL_INTERVAL": "30"}).gc_full_interval == 30.0
    with pytest.raises(ConfigError, match="gc_full_interval must be positive"):
        load({"gc_full_interval": "0"}, env={})
