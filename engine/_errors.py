"""One error family. Messages are lower-case facts with the ids in them."""

from __future__ import annotations


class QueueTasksError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidInput(QueueTasksError, ValueError):
    """The caller's input is malformed (an empty id, a negative ttl...). Nothing changed."""


class TaskNotFound(QueueTasksError, LookupError):
    """No task with this id is known (never added, or forgotten long after it ended)."""


class TaskExists(QueueTasksError):
    """A task with this id was already added."""


class TaskClosed(QueueTasksError):
    """The task can no longer change that way (already assigned, cancelled, or being confirmed)."""


class NotOfferedToYou(QueueTasksError):
    """The task is not (or no longer) offered to this operator: unknown, someone else's, expired,
    already assigned. The web layer answers 403 with errorCode 0, as the seed did."""


class AssignmentRefused(QueueTasksError):
    """The host's ``confirm_assignment`` refused (or failed, or timed out); the task is pending
    again. The web layer answers 403 with errorCode 910."""


class OperatorNotAllowed(QueueTasksError):
    """The host's ``can_wait`` said no (take-free 400, wait-sse 204)."""


class HostHookFailed(QueueTasksError):
    """A host hook raised or did not answer in time; nothing changed."""


class Overloaded(QueueTasksError):
    """The engine refuses new streams (too many open); try again later (503)."""


class EngineNotRunning(QueueTasksError):
    """The engine's ``run()`` is not (or no longer) running."""
