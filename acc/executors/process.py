"""The process executor: N local worker processes, each training one branch at a time.

Workers are spawned once and reused (torch, the recipe code and MNIST load once per worker).
Each has its own pipe to the driver: the driver sends a BranchSpec, the worker streams
``("event", dict)`` messages and ends with ``("done", outcome)``. A pipe per worker (not a
shared queue) means a worker killed mid-message cannot corrupt anyone else's channel, and
its death shows up as EOF on its pipe and its sentinel: its branch fails with the reason, a
replacement worker takes the next branch, and the others go on.

Workers ignore SIGINT: Ctrl-C reaches the driver, which sets the shared stop flag; each
worker stops at its next loss read-back and reports how far it got. A worker whose driver
dies finds its pipe closed at the next event and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

from acc.branch import BranchFailure, BranchSpec, run_branch_safely
from acc.executors import drive
from acc.status import Status

STOP_GRACE_SECONDS = 60.0  # how long stopped workers get to report before they are killed


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    spec: BranchSpec | None = None


class ProcessExecutor:
    name = "process"

    def __init__(self, workers: int = 2, threads: int | None = None) -> None:
        self.workers = max(1, workers)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)

    def run(self, specs: list[BranchSpec], sink, should_stop=None) -> None:
        drive(_Pool(self.threads, min(self.workers, len(specs)), deque(specs), sink), should_stop)

    def close(self) -> None:
        pass


class _Pool:
    """The worker processes of one ``run`` and the queue of specs they take from."""

    def __init__(self, threads: int, size: int, queue: deque, sink) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.threads, self.size, self.queue, self.sink = threads, size, queue, sink
        self.stop = self.ctx.Event()
        self.workers: list[_Worker] = []
        self.reason: Status | None = None  # why the pool was told to stop
        self.deadline: float | None = None

    def start(self) -> None:
        """Spawn every worker first, then hand out specs: sending a spec waits until its
        worker has started up and reads it, and the workers start up in parallel."""
        for _ in range(self.size):
            self.workers.append(self._spawn())  # kept as it comes: close() ends each one
        for worker in self.workers:
            self._assign(worker)

    def busy(self) -> bool:
        """Branches in flight, unless they were told to stop and the grace period is over."""
        overdue = self.deadline is not None and time.monotonic() > self.deadline
        return any(w.spec for w in self.workers) and not overdue

    def stop_all(self, reason: Status) -> None:
        """Every worker stops at its next loss read-back; nothing new starts."""
        self.reason, self.deadline = reason, time.monotonic() + STOP_GRACE_SECONDS
        self.stop.set()
        self.queue.clear()

    def serve(self) -> None:
        """Handle whatever the busy workers have sent (or their deaths) within 0.25 s."""
        busy = {w.conn: w for w in self.workers if w.spec}
        sentinels = {w.process.sentinel: w for w in busy.values()}
        for ready in wait([*busy, *sentinels], timeout=0.25):
            worker = busy.get(ready) or sentinels[ready]
            if worker.spec is not None:
                self._drain(worker)

    def _drain(self, worker: _Worker) -> None:
        """Relay the worker's messages. Only its pipe's errors mean a dead worker: the sink's
        own (a store that cannot take the write) are raised, and stop the run."""
        while worker.spec is not None and (message := _receive(worker.conn)) is not None:
            kind, payload = message
            if kind == "event":
                self.sink.event(worker.spec, payload)
            else:
                self.sink.finished(worker.spec, _as_stopped(payload, self.reason))
                with contextlib.suppress(OSError):  # it died since: _replace fails the spec
                    self._assign(worker)
        if worker.spec is not None and not worker.process.is_alive():
            self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """A worker died mid-branch: fail that branch, and start a new worker if work is left."""
        worker.process.join(timeout=5)
        failure = BranchFailure(Status.FAILED, _death(worker.process.exitcode))
        self.sink.log(f"{worker.spec.label}: {failure.error}")
        self.sink.finished(worker.spec, failure)
        worker.spec = None
        worker.conn.close()
        if self.queue:
            fresh = self._spawn()
            self.workers[self.workers.index(worker)] = fresh
            self._assign(fresh)

    def close(self) -> None:
        """Workers still busy (after the grace period, or an error here) are killed and their
        branches recorded; idle ones hold nothing, so they are terminated without waiting
        for their interpreter to tear torch down (a second per worker)."""
        for worker in self.workers:
            if worker.spec is not None:
                worker.process.kill()
                worker.process.join(timeout=5)
                status = self.reason or Status.FAILED
                self.sink.finished(worker.spec, BranchFailure(status, "stopped: worker killed"))
                worker.spec = None
            worker.process.terminate()
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()

    def _spawn(self) -> _Worker:
        ours, theirs = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_worker_main,
            args=(theirs, self.stop, self.threads),
            name="acc-branch-worker",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _assign(self, worker: _Worker) -> None:
        worker.spec = self.queue.popleft() if self.queue else None
        if worker.spec is not None:
            worker.conn.send(worker.spec)


def _receive(conn: Connection) -> tuple | None:
    """The worker's next message if one is waiting; None if none is, or its pipe is closed."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def _as_stopped(outcome, reason: Status | None):
    """A branch stopped through the shared flag reports 'cancelled'; if the driver stopped
    because of Ctrl-C, it was interrupted."""
    stopped = isinstance(outcome, BranchFailure) and outcome.status == Status.CANCELLED
    if reason == Status.INTERRUPTED and stopped:
        return replace(outcome, status=Status.INTERRUPTED, error="interrupted by the user")
    return outcome


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"the worker process died (signal {-exitcode})"
    return f"the worker process exited with code {exitcode} before finishing the branch"


def _worker_main(conn: Connection, stop, threads: int) -> None:
    """A worker's life: take a spec, train it, report; until its pipe closes or it is ended."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    import torch

    torch.set_num_threads(threads)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        outcome = run_branch_safely(spec, lambda event: conn.send(("event", event)), stop.is_set)
        try:
            conn.send(("done", outcome))
        except OSError:  # the driver is gone
            return
