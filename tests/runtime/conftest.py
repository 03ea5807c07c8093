"""Fixtures of the runtime layer: an engine running in the test's own nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
from queuetasks.engine import Engine, EngineConfig, Hooks

Start = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def start(nursery: trio.Nursery) -> Start:
    """``engine = await start(config, hooks)``: ``Engine.run`` started with ``nursery.start``
    in pytest-trio's nursery, which is cancelled when the test ends."""

    async def start(config: EngineConfig | None = None, hooks: Hooks | None = None) -> Engine:
        engine: Engine = await nursery.start(Engine(config or EngineConfig(), hooks).run)
        return engine

    return start
