"""Checkpoint evaluations the page starts in the background and can cancel.

The inspector's slow tasks (disentanglement on a level-3 checkpoint: 80+ s) used to hold one
request open with nothing to show and no way to stop. Here each runs in a thread of the
server: the page polls how long it has run and how long the same evaluation (task, parameters,
model class) took last time in this server, and a cancel stops it. A running thread cannot be
killed; it is stopped by raising ``EvaluationCancelled`` in it (CPython's
``PyThreadState_SetAsyncExc``), which takes effect at its next Python instruction: within a
tree or a batch of the work, not after the whole evaluation.
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from acc.jsonable import finite
from acc.server.inspector import InspectError

KEEP = 50  # finished evaluations kept for the page to read


class EvaluationNotFound(LookupError):
    """No evaluation with that id (never started, or long forgotten)."""


class EvaluationFinished(RuntimeError):
    """The evaluation has already ended: nothing to cancel."""


class EvaluationCancelled(BaseException):
    """Raised inside a cancelled evaluation's thread. A BaseException, so that the tasks'
    ``except Exception`` (a failed metric read as a failure) does not swallow it."""


@dataclass
class Evaluation:
    id: str
    checkpoint: str
    task: str
    params: dict
    expected_seconds: float | None  # how long the same evaluation took last time
    started: float = field(default_factory=time.monotonic)
    status: str = "running"  # running, cancelling, completed, failed, cancelled
    seconds: float | None = None  # set when it ends
    metrics: dict | None = None
    error: str | None = None
    thread: threading.Thread | None = None

    def describe(self) -> dict:
        return {
            "id": self.id,
            "checkpoint": self.checkpoint,
            "task": self.task,
            "params": self.params,
            "status": self.status,
            "seconds": self.seconds if self.seconds is not None else self.elapsed(),
            "expected_seconds": self.expected_seconds,
            "metrics": self.metrics,
            "error": self.error,
        }

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)


class Evaluations:
    """The server's background evaluations, newest last; safe across request threads."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Evaluation] = OrderedDict()
        self._last: dict[tuple, float] = {}  # seconds the last completed one of a kind took
        self._lock = threading.Lock()

    def start(
        self, checkpoint: str, task: str, params: dict, kind: tuple, work: Callable[[], dict]
    ) -> dict:
        """Run ``work`` (which returns the metrics) in a thread; ``kind`` says which earlier
        evaluations predict its duration (the task, its parameters, the model class)."""
        with self._lock:
            ev = Evaluation(
                f"eval-{secrets.token_hex(6)}", checkpoint, task, params, self._last.get(kind)
            )
            ev.thread = threading.Thread(
                target=self._run, args=(ev, kind, work), name=ev.id, daemon=True
            )
            self._items[ev.id] = ev
            self._forget_old()
            ev.thread.start()
            return ev.describe()

    def get(self, evaluation_id: str) -> dict:
        with self._lock:
            return self._find(evaluation_id).describe()

    def cancel(self, evaluation_id: str) -> dict:
        with self._lock:
            ev = self._find(evaluation_id)
            if ev.status not in ("running", "cancelling"):
                raise EvaluationFinished(f"evaluation {evaluation_id} is already {ev.status}")
            if ev.status == "running":
                ev.status = "cancelling"
                _raise_in(ev.thread, EvaluationCancelled)
            return ev.describe()

    def _run(self, ev: Evaluation, kind: tuple, work: Callable[[], dict]) -> None:
        """Run the work and record how it ended. A cancel can land at any instruction until
        the record is made (it only raises while the status is 'running'): wherever it lands,
        the evaluation is recorded as cancelled, once."""
        cancelled = ("cancelled", None, "cancelled")
        outcome = cancelled
        with contextlib.suppress(EvaluationCancelled):  # landed just after the work ended
            outcome = _outcome(work)
        while True:
            try:
                self._record(ev, kind, *outcome)
                return
            except EvaluationCancelled:
                outcome = cancelled

    def _record(self, ev: Evaluation, kind: tuple, status: str, metrics, error) -> None:
        with self._lock:
            ev.status, ev.metrics, ev.error, ev.seconds = status, metrics, error, ev.elapsed()
            if status == "completed":
                self._last[kind] = ev.seconds

    def _find(self, evaluation_id: str) -> Evaluation:
        if evaluation_id not in self._items:
            raise EvaluationNotFound(f"no evaluation {evaluation_id!r}")
        return self._items[evaluation_id]

    def _forget_old(self) -> None:
        open_ = ("running", "cancelling")
        finished = [k for k, ev in self._items.items() if ev.status not in open_]
        for key in finished[: max(0, len(self._items) - KEEP)]:
            del self._items[key]


def _outcome(work: Callable[[], dict]) -> tuple[str, dict | None, str | None]:
    """(status, metrics, error) of the work."""
    try:
        return "completed", finite(work()), None
    except EvaluationCancelled:
        return "cancelled", None, "cancelled"
    except InspectError as exc:
        return "failed", None, str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the page, not lost in a thread
        return "failed", None, f"{type(exc).__name__}: {exc}"


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in ``thread`` at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type)
    )
