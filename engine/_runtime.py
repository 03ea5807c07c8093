"""The trio runtime: drives the sans-IO core, runs the host's hooks at the edges, owns streams.

Every call into the engine that changes state does so in one synchronous ``Core`` step and then
carries out the returned effects without awaiting; awaiting (host hooks) happens before the step
or in the engine's own nursery after it. So a caller cancelled at any ``await`` leaves the engine
consistent: a disconnect during ``assign`` still lets the host's confirmation finish and land.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio

from ._core import Core, CoreConfig
from ._effects import Close, Confirm, Effect, EngineEvent, Notify, Send
from ._errors import (
    AssignmentRefused,
    EngineNotRunning,
    HostHookFailed,
    OperatorNotAllowed,
    Overloaded,
    QueueTasksError,
)
from ._events import EventSubscription
from ._hooks import Hooks
from ._stream import TabStream
from ._types import (
    DEFAULT_POOL,
    Operator,
    OperatorId,
    QueueEntry,
    TabId,
    TaskId,
    TaskInfo,
    TaskSpec,
    TaskState,
)

log = logging.getLogger("queuetasks.engine")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """All timings in seconds (SPEC section 7); the defaults are the seed's."""

    #: How long an operator has to assign or reject an offer.
    offer_timeout: float = 40.0
    #: How long an offer survives with no open tab of its operator; None = ``offer_timeout``.
    disconnect_grace: float | None = None
    #: Limit for each call of an async host hook.
    hook_timeout: float = 10.0
    #: Open streams above this are refused with ``Overloaded`` (keep it below the fd limit).
    max_streams: int = 1_000_000
    #: Ended tasks remembered for lookups and duplicate-id checks.
    retain_ended: int = 100_000
    #: Tasks the host may refuse in one take-free before it returns null.
    take_free_attempts: int = 5

    def __post_init__(self) -> None:
        if not self.hook_timeout > 0:
            raise ValueError("hook_timeout must be positive")
        if self.max_streams < 1 or self.take_free_attempts < 1:
            raise ValueError("max_streams and take_free_attempts must be at least 1")


class _Waiter:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: QueueTasksError | None = None


class Engine:
    """The dispatch engine. Start it with ``await nursery.start(engine.run)``.

    Producer calls (``add_task``, ``push_task``, ``cancel_task``) and most operator calls are
    synchronous; ``open_stream``, ``assign`` and ``take_free`` are async because they consult the
    host. Calls made while the engine is not running raise ``EngineNotRunning``.
    """

    def __init__(self, config: EngineConfig | None = None, hooks: Hooks | None = None) -> None:
        self.config = config or EngineConfig()
        self.hooks = hooks or Hooks()
        self._core = Core(CoreConfig(
            offer_timeout=self.config.offer_timeout,
            disconnect_grace=self.config.disconnect_grace,
            retain_ended=self.config.retain_ended,
            predicate=self.hooks.can_assign,
        ))
        self._streams: dict[TabId, TabStream] = {}
        self._tab_ids = itertools.count(1)
        self._waiters: dict[tuple[OperatorId, TaskId], _Waiter] = {}
        self._subscribers: list[EventSubscription] = []
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._nursery: trio.Nursery | None = None
        self._sleeper = trio.CancelScope()
        self._wall_offset = 0.0

    def __repr__(self) -> str:
        state = "running" if self._nursery is not None else "stopped"
        return (f"<Engine {state} waiting={len(self._core._waiting)} "
                f"pending={len(self._core._pending)} streams={len(self._streams)}>")

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: fires offer deadlines, disconnect graces and task lifetimes, and
        hosts the host-confirmation tasks. On cancellation every stream ends with reason
        ``shutdown``."""
        if self._nursery is not None:
            raise RuntimeError("engine is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._wall_offset = time.time() - trio.current_time()
                task_status.started(self)
                while True:
                    self._sleeper = trio.CancelScope(deadline=self._next_deadline())
                    with self._sleeper:
                        await trio.sleep_forever()
                    self._apply(self._core.advance(trio.current_time()))
        finally:
            self._nursery = None
            self._apply(self._core.shutdown())
            for waiter in self._waiters.values():
                waiter.error = EngineNotRunning("engine stopped during the host's confirmation")
                waiter.done.set()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    # ------------------------------------------------------------------ producer side

    def add_task(
        self,
        task_id: str,
        *,
        priority: int = 0,
        pool: str = DEFAULT_POOL,
        min_grade: int = 0,
        ttl: float | None = None,
        payload: Any = None,
    ) -> None:
        """Add a task: offered at once to the longest-waiting suitable operator, else kept pending
        (never dropped) until offered, cancelled or its ``ttl`` ends. Raises ``TaskExists``,
        ``InvalidInput``. Does not block."""
        self._require_running()
        spec = TaskSpec(TaskId(task_id), priority, pool, min_grade, ttl, payload)
        self._apply(self._core.add_task(spec, self._now()))

    def push_task(self, task_id: str, operator_id: str, *, payload: Any = None) -> None:
        """Give a task to an operator directly, already assigned (the seed's
        ``AddTask(taskId, operatorId)``); delivered to his tabs as soon as he has one."""
        self._require_running()
        self._apply(self._core.push_task(TaskId(task_id), OperatorId(operator_id), self._now(),
                                         payload))

    def cancel_task(self, task_id: str) -> None:
        """Cancel a pending or offered task. Raises ``TaskNotFound`` or ``TaskClosed``."""
        self._require_running()
        self._apply(self._core.cancel_task(TaskId(task_id), self._now()))

    def task(self, task_id: str) -> TaskInfo:
        """The task's state now. Raises ``TaskNotFound``."""
        return self._core.task(TaskId(task_id))

    # ------------------------------------------------------------------ operator side

    async def open_stream(self, operator: Operator) -> TabStream:
        """A new tab of ``operator`` starts waiting (or resumes his open offer). Asks the host's
        ``can_wait`` first: raises ``OperatorNotAllowed``, ``HostHookFailed``, ``Overloaded``.
        The caller must ``close()`` the returned stream; cancelled before it returns, nothing
        changed."""
        self._require_running()
        if len(self._streams) >= self.config.max_streams:
            raise Overloaded(f"{len(self._streams)} streams are open, the limit")
        await self._check_can_wait(operator)
        self._require_running()
        if len(self._streams) >= self.config.max_streams:  # others opened while we awaited
            raise Overloaded(f"{len(self._streams)} streams are open, the limit")
        tab = TabId(next(self._tab_ids))
        stream = TabStream(self, tab, operator)
        self._streams[tab] = stream
        self._apply(self._core.open_tab(operator, tab, self._now()))
        return stream

    async def assign(self, operator_id: str, task_id: str) -> None:
        """Accept the task offered to this operator; returns once the host confirmed. Raises
        ``NotOfferedToYou`` (nothing changed) or ``AssignmentRefused`` (the task is pending again).
        Cancelling the caller does not cancel the host's confirmation: it still lands."""
        self._require_running()
        fx = self._core.assign(OperatorId(operator_id), TaskId(task_id), self._now())
        waiter = self._waiters[(OperatorId(operator_id), TaskId(task_id))] = _Waiter()
        self._apply(fx)
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error

    def reject(self, operator_id: str, task_id: str) -> None:
        """Decline the task offered to this operator: it goes to the next one. Raises
        ``NotOfferedToYou``."""
        self._require_running()
        self._apply(self._core.reject(OperatorId(operator_id), TaskId(task_id), self._now()))

    async def take_free(self, operator: Operator) -> TaskId | None:
        """Pull the best pending task that suits ``operator`` at once, assigned through the
        host's confirmation, even while others wait; then the host's own ``find_free_task``.
        Returns None when there is none, or when he already waits in a tab or holds an offer.
        Raises ``OperatorNotAllowed`` when ``can_wait`` says no."""
        self._require_running()
        await self._check_can_wait(operator)
        refused: set[TaskId] = set()
        for _ in range(self.config.take_free_attempts):
            self._require_running()
            task_id, fx = self._core.take_free(operator, self._now(), frozenset(refused))
            if task_id is None:
                break
            waiter = self._waiters[(operator.id, task_id)] = _Waiter()
            self._apply(fx)
            await waiter.done.wait()
            if waiter.error is None:
                return task_id
            if not isinstance(waiter.error, AssignmentRefused):
                raise waiter.error
            refused.add(task_id)
        else:
            return None
        if self._core.offer_of(operator.id) is not None:
            return None
        return await self._take_host_task(operator, refused)

    def exit(self, operator_id: str) -> None:
        """Stop waiting in every tab of this operator (their streams end); an open offer is
        withdrawn and goes to the next one."""
        self._require_running()
        self._apply(self._core.exit(OperatorId(operator_id), self._now()))

    # ------------------------------------------------------------------ observing

    def queue(self) -> list[QueueEntry]:
        """Operators with open tabs: the waiting ones longest first, then the busy ones."""
        return self._core.queue()

    def wall_time(self, at: float) -> float:
        """A time of the engine's clock as a Unix timestamp."""
        return self._wall_offset + at

    def statistics(self) -> dict[str, int]:
        """Counts now (waiting operators, open streams, pending tasks, open offers...) and totals
        since start (offers by outcome...)."""
        stats = self._core.statistics()
        stats["open_streams"] = len(self._streams)
        stats["subscribers"] = len(self._subscribers)
        return stats

    def subscribe(self, buffer: int = 10_000) -> EventSubscription:
        """An async iterator of every ``EngineEvent`` from now on. A subscriber that falls
        ``buffer`` events behind is cut off with ``EventsLost`` rather than slowing the engine."""
        sub = EventSubscription(buffer, self._subscribers.remove)
        self._subscribers.append(sub)
        return sub

    def add_listener(self, listener: Callable[[EngineEvent], None]) -> None:
        """Call ``listener(event)`` synchronously for every event (for metrics). It must be quick
        and must not call back into the engine; its exceptions are logged."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ internals

    def _now(self) -> float:
        return trio.current_time()

    def _next_deadline(self) -> float:
        deadline = self._core.next_deadline()
        return math.inf if deadline is None else deadline

    def _require_running(self) -> None:
        if self._nursery is None:
            raise EngineNotRunning("the engine is not running")

    async def _check_can_wait(self, operator: Operator) -> None:
        # A checkpoint even when the host's hook never awaits (the default): every async call
        # of the engine can be cancelled and lets others run.
        await trio.lowlevel.checkpoint()
        try:
            with trio.fail_after(self.config.hook_timeout):
                allowed = await self.hooks.can_wait(operator)
        except trio.TooSlowError:
            raise HostHookFailed(f"can_wait did not answer within {self.config.hook_timeout}s "
                                 f"for operator {operator.id}") from None
        except QueueTasksError:
            raise
        except Exception as exc:
            log.exception("can_wait failed for operator %s", operator.id)
            raise HostHookFailed(f"can_wait failed for operator {operator.id}: {exc!r}") from exc
        if not allowed:
            raise OperatorNotAllowed(f"operator {operator.id} may not wait for tasks")

    def _apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                for tab in effect.tabs:
                    stream = (self._streams.pop(tab, None) if effect.close is not None
                              else self._streams.get(tab))
                    if stream is not None:
                        stream._put(effect.message, effect.close)
            elif isinstance(effect, Close):
                for tab in effect.tabs:
                    stream = self._streams.pop(tab, None)
                    if stream is not None:
                        stream._end(effect.reason)
            elif isinstance(effect, Confirm):
                self._start_confirmation(effect)
            elif isinstance(effect, Notify):
                self._publish(effect.event)
        self._sleeper.deadline = self._next_deadline()

    def _publish(self, event: EngineEvent) -> None:
        for sub in list(self._subscribers):
            sub._publish(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %r", listener, event)

    def _start_confirmation(self, effect: Confirm) -> None:
        key = (effect.operator_id, effect.task_id)
        if type(self.hooks).confirm_assignment is Hooks.confirm_assignment:
            # No host decision to wait for: confirm in the same step.
            self._finish_confirmation(key, True, None)
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._confirm, effect)

    async def _confirm(self, effect: Confirm) -> None:
        key = (effect.operator_id, effect.task_id)
        task = self._core.task(effect.task_id)
        operator = self._core._ops[effect.operator_id].profile
        ok, detail = False, "refused by the host"
        try:
            with trio.fail_after(self.config.hook_timeout):
                ok = bool(await self.hooks.confirm_assignment(task, operator))
        except AssignmentRefused as exc:
            detail = str(exc) or detail
        except trio.TooSlowError:
            detail = f"the host did not confirm within {self.config.hook_timeout}s"
        except Exception as exc:
            log.exception("confirm_assignment failed for task %s, operator %s",
                          effect.task_id, effect.operator_id)
            detail = f"confirm_assignment failed: {exc!r}"
        self._finish_confirmation(key, ok, None if ok else detail)

    def _finish_confirmation(self, key: tuple[OperatorId, TaskId], ok: bool,
                             detail: str | None) -> None:
        operator_id, task_id = key
        self._apply(self._core.confirm(operator_id, task_id, ok, self._now(), detail))
        waiter = self._waiters.pop(key, None)
        if waiter is not None:
            if not ok:
                waiter.error = AssignmentRefused(
                    f"task {task_id} was not assigned to operator {operator_id}: {detail}")
            waiter.done.set()

    async def _take_host_task(self, operator: Operator, refused: set[TaskId]) -> TaskId | None:
        hooks = self.hooks
        if type(hooks).find_free_task is Hooks.find_free_task:
            return None
        for _ in range(self.config.take_free_attempts):
            try:
                with trio.fail_after(self.config.hook_timeout):
                    found = await hooks.find_free_task(operator, frozenset(refused))
                if found is None or found in refused:
                    return None
                task_id = TaskId(found)
                info = TaskInfo(task_id, TaskState.PENDING, 0, DEFAULT_POOL, 0, None,
                                self._now(), None)
                with trio.fail_after(self.config.hook_timeout):
                    ok = await hooks.confirm_assignment(info, operator)
            except AssignmentRefused:
                ok = False
            except trio.TooSlowError:
                raise HostHookFailed("find_free_task or confirm_assignment did not answer "
                                     f"within {self.config.hook_timeout}s") from None
            except QueueTasksError:
                raise
            except Exception as exc:
                log.exception("find_free_task failed for operator %s", operator.id)
                raise HostHookFailed(f"find_free_task failed: {exc!r}") from exc
            if ok:
                return task_id
            refused.add(task_id)
        return None

    # ---- called by TabStream

    def _tab_closed(self, stream: TabStream) -> None:
        if self._streams.pop(stream.tab, None) is not None:
            self._apply(self._core.close_tab(stream.tab, self._now()))

    def _push_sent(self, operator_id: OperatorId, offer_id: int, delivered: bool) -> None:
        self._apply(self._core.push_sent(operator_id, offer_id, delivered, self._now()))
