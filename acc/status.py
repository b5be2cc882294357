"""Status: the one set of states a run, a branch and a job can be in.

The store writes these values, the server returns them and the page reads them from
``GET /api/statuses``, so every part agrees on what "finished" means.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    QUEUED = "queued"  # planned, waiting for a worker
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # a branch that failed; a run none of whose branches completed
    PARTIAL = "partial"  # a run some of whose branches completed and some did not (resumable)
    CANCELLED = "cancelled"  # stopped on request (dashboard cancel)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C, SIGTERM or a process that died: resumable

    @property
    def is_open(self) -> bool:
        """Not finished: it will still change without anyone resuming it."""
        return self in OPEN

    def __str__(self) -> str:
        return self.value


OPEN = frozenset({Status.QUEUED, Status.RUNNING})
