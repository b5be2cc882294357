"""Executors: where branches train. Each takes the plan's BranchSpecs and reports to a sink.

* ``inline``  — one after another in this process (the default with one worker);
* ``process`` — N local worker processes (the default with ``--workers N > 1``);
* ``ray``     — Ray Core tasks on a local Ray instance or an existing cluster;
* ``stacked`` — branches that share a program trained as one (one forward and backward a
  step for a whole stack; acc/executors/stacked.py), in this process.

Whatever the executor, the sink (``acc.recorder.RunRecorder``) gets every event and outcome
in the driver's thread, so the store has one writer and live progress looks the same.
A failing or lost worker fails its branch only; the others go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from acc.branch import BranchOutcome, BranchSpec
from acc.status import Status
from acc.trainer import StopRequested

EXECUTORS = ("inline", "process", "ray", "stacked")


class ExecutorError(ValueError):
    """Executor options that cannot work (unknown name, Ray missing or unreachable)."""


class BranchSink(Protocol):
    def event(self, spec: BranchSpec, event: dict) -> None: ...

    def finished(self, spec: BranchSpec, outcome: BranchOutcome) -> None: ...

    def log(self, message: str) -> None: ...

    def notice(self, message: str) -> None:
        """A message the person watching should see now (the CLI prints it)."""


class Executor(Protocol):
    name: str
    workers: int  # branches trained at the same time

    def run(self, specs: list[BranchSpec], sink: BranchSink, should_stop=None) -> None:
        """Train every spec; raise KeyboardInterrupt (Ctrl-C) or StopRequested (cancel) after
        recording the branches that stopped, never leaving one unreported."""

    def close(self) -> None: ...


class Running(Protocol):
    """The branches a parallel executor has in flight (worker processes, Ray tasks)."""

    reason: Status | None  # why they were told to stop, if they were

    def start(self) -> None: ...

    def busy(self) -> bool: ...

    def serve(self) -> None:
        """Relay what has arrived within a fraction of a second to the sink."""

    def stop_all(self, reason: Status) -> None: ...

    def close(self) -> None:
        """Release everything; record any branch still in flight as stopped."""


def drive(running: Running, should_stop: Callable[[], bool] | None = None) -> None:
    """The driver loop of every parallel executor: relay events until nothing is in flight.
    A cancel (``should_stop``) or a first Ctrl-C asks every branch to stop and waits for
    each to report how far it got; a second Ctrl-C stops waiting. Then KeyboardInterrupt
    or StopRequested is raised, with every stopped branch already recorded."""
    try:
        running.start()
        while running.busy():
            try:
                running.serve()
                if running.reason is None and should_stop is not None and should_stop():
                    running.stop_all(Status.CANCELLED)
            except KeyboardInterrupt:
                if running.reason is not None:
                    raise
                running.stop_all(Status.INTERRUPTED)
    finally:
        running.close()
    if running.reason == Status.INTERRUPTED:
        raise KeyboardInterrupt
    if running.reason == Status.CANCELLED:
        raise StopRequested("cancelled")


def default_executor(workers: int) -> str:
    return "inline" if workers <= 1 else "process"


def make_executor(
    name: str | None = None,
    workers: int = 1,
    threads: int | None = None,
    ray_address: str | None = None,
    gpus_per_branch: float = 0.0,
    stack_size: int | None = None,
) -> Executor:
    """The named executor, checked now (Ray installed and reachable) so that a run is only
    opened once it can be executed."""
    name = name or default_executor(workers)
    if name == "inline":
        from acc.executors.inline import InlineExecutor

        return InlineExecutor(threads)
    if name == "process":
        from acc.executors.process import ProcessExecutor

        return ProcessExecutor(workers, threads)
    if name == "ray":
        from acc.executors.ray_executor import RayExecutor

        return RayExecutor(ray_address, threads, gpus_per_branch)  # sized by the cluster
    if name == "stacked":
        from acc.executors.stacked import StackedExecutor

        return StackedExecutor(stack_size, threads)
    raise ExecutorError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
