"""The stacked executor: branches that share a program train as one (``--executor stacked``).

Each stack (acc/stack_plan.py) trains at once, one thread per branch: every branch runs its
ordinary ``run_branch`` (so its events, resume points, checkpoints, metrics and final
evaluation are exactly a branch's: the store, the results and the dashboard cannot tell),
and only its training steps are joint: one forward and one backward for the whole stack
(acc/stack_meeting.py, acc/stack_step.py). Stacks, and branches that run alone, run one
after another: branches alone may draw from the global RNG (VAE noise), which threads would
share. Events reach the sink from the driver's thread, through a queue, as with the other
executors.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import replace

import torch

from acc.branch import BranchFailure, BranchSpec, run_branch_safely
from acc.executors import ExecutorError, drive
from acc.stack_meeting import StackMeeting
from acc.stack_plan import plan_stacks
from acc.status import Status

STOP_GRACE_SECONDS = 60.0  # how long stopped branches get to report before they are given up


def check_stack_size(stack_size: int | None) -> int | None:
    if stack_size is not None and (isinstance(stack_size, bool) or stack_size < 1):
        raise ExecutorError(
            f"--stack-size must be a whole number >= 1 (branches per stack), got {stack_size}; "
            "leave it out to stack every branch that shares a program"
        )
    return stack_size


class StackedExecutor:
    name = "stacked"

    def __init__(self, stack_size: int | None = None, threads: int | None = None) -> None:
        self.stack_size = check_stack_size(stack_size)
        self.threads = threads
        self.workers = stack_size or 1  # what the CLI prints as "at a time" (a stack)
        self.meetings: list[StackMeeting] = []  # of the last run (tests, the bench)

    def run(self, specs: list[BranchSpec], sink, should_stop=None) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        plan = plan_stacks(specs, self.stack_size)
        if plan.alone or len(plan.stacks) > 1:
            sink.notice(plan.summary())
        else:
            sink.log(plan.summary())
        self.meetings = []
        for stack in plan.stacks:
            meeting = StackMeeting([spec.branch_id for spec in stack])
            self.meetings.append(meeting)
            drive(_Threads(stack, sink, meeting), should_stop)
        for spec, _ in plan.alone:
            drive(_Threads([spec], sink, None), should_stop)

    def close(self) -> None:
        pass


class _Threads:
    """The branches of one stack (or one branch alone), each in a thread; their events
    queued for the driver's thread."""

    def __init__(self, specs: list[BranchSpec], sink, meeting: StackMeeting | None) -> None:
        self.specs, self.sink, self.meeting = specs, sink, meeting
        self.messages: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.reason: Status | None = None
        self.deadline: float | None = None
        self.running = {spec.branch_id: spec for spec in specs}
        self.threads: list[threading.Thread] = []
        self.said = False

    def start(self) -> None:
        for spec in self.specs:
            thread = threading.Thread(
                target=self._branch, args=(spec,), name=f"acc-stack-{spec.label}", daemon=True
            )
            self.threads.append(thread)
            thread.start()

    def _branch(self, spec: BranchSpec) -> None:
        def emit(event: dict) -> None:
            self.messages.put(("event", spec, event))

        join = None
        if self.meeting is not None:
            meeting = self.meeting

            def join(spec, model, trainer, gating):
                return meeting.member(spec.branch_id, spec.label, model, trainer, gating)

        try:
            outcome = run_branch_safely(spec, emit, self.stop.is_set, join)
        except BaseException as exc:  # noqa: BLE001 - the driver decides (a full store)
            outcome = exc
        finally:
            if self.meeting is not None:
                self.meeting.leave(spec.branch_id)  # one that never joined: not waited for
        self.messages.put(("done", spec, outcome))

    def _say_fallback(self) -> None:
        """Once: a stack whose model could not be stacked trained its branches one by one."""
        if self.meeting is not None and self.meeting.fallback and not self.said:
            self.said = True
            labels = ", ".join(spec.label for spec in self.specs)
            self.sink.notice(
                f"stacked executor: {labels} could not train as one program "
                f"({self.meeting.fallback}); each steps on its own (results unchanged)"
            )

    def busy(self) -> bool:
        overdue = self.deadline is not None and time.monotonic() > self.deadline
        return bool(self.running) and not overdue

    def serve(self) -> None:
        """Relay what the branches sent within a quarter of a second."""
        self._say_fallback()
        try:
            kind, spec, payload = self.messages.get(timeout=0.25)
        except queue.Empty:
            return
        while True:
            self._relay(kind, spec, payload)
            try:
                kind, spec, payload = self.messages.get_nowait()
            except queue.Empty:
                return

    def _relay(self, kind: str, spec: BranchSpec, payload) -> None:
        if kind == "event":
            self.sink.event(spec, payload)
            return
        self.running.pop(spec.branch_id, None)
        if isinstance(payload, BaseException):
            raise payload
        self.sink.finished(spec, _as_stopped(payload, self.reason))

    def stop_all(self, reason: Status) -> None:
        self.reason, self.deadline = reason, time.monotonic() + STOP_GRACE_SECONDS
        self.stop.set()

    def close(self) -> None:
        """Relay what is left; branches still running (past the grace period, or after an
        error here) are asked to stop and recorded as stopped."""
        self.stop.set()
        self._say_fallback()
        for thread in self.threads:
            thread.join(timeout=STOP_GRACE_SECONDS if self.reason is None else 5)
        while not self.messages.empty():
            kind, spec, payload = self.messages.get_nowait()
            if kind == "done" and not isinstance(payload, BaseException):
                self.running.pop(spec.branch_id, None)
                self.sink.finished(spec, _as_stopped(payload, self.reason))
            elif kind == "event":
                self.sink.event(spec, payload)
        for spec in list(self.running.values()):
            status = self.reason or Status.FAILED
            self.sink.finished(spec, BranchFailure(status, "stopped: its thread did not end"))
        self.running.clear()
        if self.meeting is not None:
            self.meeting.close()


def _as_stopped(outcome, reason: Status | None):
    """A branch stopped through the shared flag after Ctrl-C was interrupted, not cancelled."""
    stopped = isinstance(outcome, BranchFailure) and outcome.status == Status.CANCELLED
    if reason == Status.INTERRUPTED and stopped:
        return replace(outcome, status=Status.INTERRUPTED, error="interrupted by the user")
    return outcome
