"""The job runner: a queue of runs, each driven by a thread of the server with an executor.

The server's process owns the store: a job's driver thread plans the run, hands its branches
to the executor (local worker processes by default, or Ray) and records what they stream
back, exactly as ``acc run`` does. Workers never open the store. A dispatcher thread starts
queued jobs while fewer than ``max_concurrent`` run and, now and then, closes runs whose
process died outside any job (a CLI run killed with SIGKILL).

Cancelling sets the job's stop flag: its workers stop at their next loss read-back and the
run is 'cancelled'. Stopping the server stops every job the same way but records the runs
as 'interrupted', which the Resume button (or ``acc run --resume``) finishes later.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from acc.executors import Executor, make_executor
from acc.jsonable import finite
from acc.results import build_results, build_sweep_results
from acc.runner import (
    DEFAULT_CHECKPOINT_EVERY,
    check_resumable,
    check_resumable_sweep,
    create_run,
    execute_run,
    execute_sweep,
    open_sweep,
    prepare_sweep,
    split_config,
)
from acc.server.jobstore import JobStore
from acc.server.lease import StoreLease
from acc.status import OPEN, Status
from acc.store import Store, StoreError
from acc.sweep import MAX_BRANCHES


class JobNotFound(LookupError):
    """No job with that id."""


class JobConflict(RuntimeError):
    """The job cannot do that in its present state (e.g. cancel a finished job)."""


class QueueFull(ValueError):
    """MAX_QUEUED jobs are already waiting: a new one is refused before anything is opened."""


MAX_QUEUED = 100


@dataclass
class _Driver:
    """A running job: its driver thread and its stop flag."""

    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    cancel_requested: bool = False
    shutting_down: bool = False


@dataclass
class JobManager:
    store_root: Path
    max_concurrent: int = 1
    worker_threads: int | None = None  # torch threads per branch worker [cores - 1 / workers]
    device: str = "auto"
    data_dir: str | None = None
    executor: str = "process"
    workers: int = 1  # branches of one job trained at the same time
    ray_address: str | None = None
    gpus_per_branch: float = 0.0
    poll_seconds: float = 0.2
    orphan_check_seconds: float = 5.0
    join_seconds: float = 90.0  # how long shutdown waits for a job to record its stop

    def __post_init__(self) -> None:
        self.store_root = Path(self.store_root)
        self._drivers: dict[str, _Driver] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._next_orphan_check = 0.0
        self._shared: Executor | None = None  # Ray: one connection for every job
        self._submitting = threading.Lock()  # see _queue_slot
        self.lease = StoreLease(self.store_root)  # one server per store

    # --- per-thread store connections (a sqlite connection must not interleave transactions)

    @property
    def store(self) -> Store:
        if not hasattr(self._local, "store"):
            self._local.store = Store(self.store_root)
        return self._local.store

    @property
    def jobs(self) -> JobStore:
        if not hasattr(self._local, "jobs"):
            self._local.jobs = JobStore(self.store_root)
        return self._local.jobs

    # --- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Join Ray now (if jobs run there), so an unreachable cluster fails the start."""
        if self.executor == "ray" and self._shared is None:
            self._shared = self._make_executor()

    def start(self) -> None:
        """Take the store's lease (StoreBusy if another server has it), then close the running
        jobs of a server that died (interrupted, resumable) and take over its queued ones."""
        self.lease.acquire()
        self.connect()
        for job in self.jobs.with_status(Status.RUNNING):
            self._finalize(job, Status.INTERRUPTED, "the server stopped while the job was running")
        self._thread = threading.Thread(target=self._loop, name="acc-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching; stop running jobs (their runs are 'interrupted', resumable);
        leave queued jobs queued for the next server on this store."""
        with self._wake:
            self._stopping = True
            for driver in self._drivers.values():
                driver.shutting_down = True
                driver.stop.set()
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=10)
        for job_id, driver in list(self._drivers.items()):
            driver.thread.join(timeout=self.join_seconds)
            job = self.jobs.get(job_id)
            if job:
                self._finalize(
                    job, Status.INTERRUPTED, "the server stopped while the job was running"
                )
        self._drivers.clear()
        if self._shared is not None:
            self._shared.close()
        self.lease.release()  # queued jobs stay queued: the next server on this store runs them

    # --- operations --------------------------------------------------------------------------

    def submit(
        self,
        recipe: str,
        params: dict,
        deltas: dict | None = None,
        correction: str | None = None,
        checkpoint_every: int | None = None,
    ) -> dict:
        """Validate and queue. Raises RegistryError / ParamsError / DataError / DecisionError
        on bad input. ``checkpoint_every``: steps between resume points (None: the default)."""
        with self._queue_slot():
            run_id = create_run(
                self.store,
                recipe,
                params,
                "cuda" if self.gpus_per_branch else self.device,
                self.data_dir,
                queued=True,
                checkpoint_every=(
                    DEFAULT_CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
                ),
                remote_device=bool(self.gpus_per_branch),
                deltas=deltas,
                correction=correction,
            )
            return self._queue(run_id, recipe, params, resume=False)

    def submit_sweep(
        self,
        recipe: str,
        params: dict,
        grid: dict,
        zipped: dict,
        yes: bool,
        deltas: dict | None = None,
        correction: str | None = None,
    ) -> dict:
        """Validate, expand and queue a sweep (SweepError / ParamsError / DecisionError)."""
        with self._queue_slot():
            plan = prepare_sweep(
                recipe,
                params,
                grid,
                zipped,
                "cuda" if self.gpus_per_branch else self.device,
                self.data_dir,
                remote_device=bool(self.gpus_per_branch),
                max_branches=None if yes else MAX_BRANCHES,
                deltas=deltas,
                correction=correction,
            )
            sweep_id = open_sweep(self.store, plan, queued=True)
            spec = {"params": params, "grid": grid, "zip": zipped}
            return self._queue(sweep_id, recipe, spec, resume=False, sweep_id=sweep_id)

    def resume(self, run_id: str) -> dict:
        """Queue a job that finishes a stopped run (ResumeError / NothingToResume if it
        cannot be resumed)."""
        with self._queue_slot():
            self.store.close_orphaned_runs(exclude=self._active_runs())
            run = check_resumable(self.store, run_id)
            self.store.queue_run(run_id)
            params = split_config(run["config"])[0]
            return self._queue(run_id, run["recipe"], params, resume=True)

    def resume_sweep(self, sweep_id: str) -> dict:
        with self._queue_slot():
            self.store.close_orphaned_runs(exclude=self._active_runs())
            sweep = check_resumable_sweep(self.store, sweep_id)
            self.store.set_sweep_status(sweep_id, Status.QUEUED)
            spec = {"params": sweep["spec"]["base_params"], **sweep["spec"]["axes"]}
            return self._queue(sweep_id, sweep["recipe"], spec, resume=True, sweep_id=sweep_id)

    @contextmanager
    def _queue_slot(self) -> Iterator[None]:
        """Check that the queue has room, then (in the ``with`` body) open and queue the job,
        as one step: submissions take turns, so concurrent ones cannot all pass the check
        before any is queued (the store's lease makes this server the only one queueing
        jobs on it). QueueFull, before anything is opened, when MAX_QUEUED already wait."""
        with self._submitting:
            waiting = len(self.jobs.with_status(Status.QUEUED))
            if waiting >= MAX_QUEUED:
                raise QueueFull(
                    f"{waiting} jobs are already queued (at most {MAX_QUEUED}); wait for some "
                    "to finish or cancel some, then submit again"
                )
            yield

    def _queue(
        self, run_id: str, recipe: str, params: dict, resume: bool, sweep_id: str | None = None
    ) -> dict:
        job_id = self.jobs.create(run_id, recipe, params, sweep_id)
        self.jobs.add_event(
            job_id, {"type": "job", "status": "queued", "run_id": run_id, "resume": resume}
        )
        job = self.get(job_id)  # as submitted: the dispatcher may start it at once
        with self._wake:
            self._wake.notify_all()
        return job

    def get(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return self._flag(job)

    def list(self, limit: int = 100) -> list[dict]:
        return [self._flag(job) for job in self.jobs.list(limit)]

    def _flag(self, job: dict) -> dict:
        driver = self._drivers.get(job["id"])
        return {**job, "cancel_requested": driver is not None and driver.cancel_requested}

    def cancel(self, job_id: str) -> dict:
        job = self.get(job_id)
        if Status(job["status"]) not in OPEN:
            raise JobConflict(f"job {job_id} is already {job['status']}; nothing to cancel")
        with self._wake:
            driver = self._drivers.get(job_id)
            if driver is None:  # still queued: it never started
                self._finalize(job, Status.CANCELLED, "cancelled before it started")
            elif not driver.cancel_requested:
                driver.cancel_requested = True
                driver.stop.set()
                self.jobs.add_event(job_id, {"type": "job", "status": "cancelling"})
            self._wake.notify_all()
        return self.get(job_id)

    # --- the dispatcher ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                self._reap()
                self._launch()
                self._close_orphaned_runs()
                self._wake.wait(self.poll_seconds)

    def _launch(self) -> None:
        queued = self.jobs.with_status("queued")
        while queued and len(self._drivers) < self.max_concurrent:
            job = queued.pop(0)
            driver = _Driver()
            driver.thread = threading.Thread(
                target=self._drive, args=(job, driver), name=f"acc-job-{job['id']}", daemon=True
            )
            self._drivers[job["id"]] = driver
            self.jobs.set_running(job["id"], os.getpid())
            self.jobs.add_event(job["id"], {"type": "job", "status": "running", "pid": os.getpid()})
            driver.thread.start()

    def _reap(self) -> None:
        for job_id, driver in list(self._drivers.items()):
            if not driver.thread.is_alive():
                del self._drivers[job_id]

    def _drive(self, job: dict, driver: _Driver) -> None:
        """A job's driver thread: execute its run, record the outcome in the job."""
        jobs, status, error = self.jobs, Status.FAILED, None
        try:
            executor = self._shared or self._make_executor()
            execute = execute_sweep if job["sweep_id"] else execute_run
            try:
                results = execute(
                    self.store,
                    job["run_id"],
                    executor,
                    on_event=lambda e: jobs.add_event(job["id"], finite(e)),
                    should_stop=driver.stop.is_set,
                )
            finally:
                if executor is not self._shared:
                    executor.close()
            if driver.shutting_down and results["status"] == Status.CANCELLED:
                results = self._interrupted(job)
            status, error = Status(results["status"]), results.get("error")
            jobs.add_event(
                job["id"], finite({"type": "final", "status": status, "results": results})
            )
        except BaseException as exc:  # recorded in the job; the run is closed below
            error = f"{type(exc).__name__}: {exc}"
            jobs.add_event(job["id"], {"type": "log", "message": traceback.format_exc()})
        finally:
            self._finalize(job, status, error)

    def _interrupted(self, job: dict) -> dict:
        """A job stopped by the server's shutdown: its runs (and sweep) are resumable."""
        why = "the server stopped"
        if not job["sweep_id"]:
            self.store.relabel_stopped(job["run_id"], Status.INTERRUPTED, why)
            return build_results(self.store, job["run_id"])
        for run in self.store.sweep_runs(job["sweep_id"]):
            self.store.relabel_stopped(run["id"], Status.INTERRUPTED, why)
        self.store.set_sweep_status(job["sweep_id"], Status.INTERRUPTED, why)
        return build_sweep_results(self.store, job["sweep_id"])

    def _make_executor(self) -> Executor:
        threads = self.worker_threads or max(1, ((os.cpu_count() or 2) - 1) // self.workers)
        return make_executor(
            self.executor, self.workers, threads, self.ray_address, self.gpus_per_branch
        )

    def _active_runs(self) -> set[str]:
        """Ids of the runs (and sweeps, and their runs) that jobs of this server drive."""
        active = set()
        for job in self.jobs.with_status(*OPEN):
            active.add(job["run_id"])
            if job["sweep_id"]:
                active |= {run["id"] for run in self.store.sweep_runs(job["sweep_id"])}
        return active

    def _close_orphaned_runs(self) -> None:
        """Now and then, close runs whose process died outside any job (a CLI run killed with
        SIGKILL): the page would otherwise poll them forever."""
        if time.monotonic() < self._next_orphan_check:
            return
        self._next_orphan_check = time.monotonic() + self.orphan_check_seconds
        self.store.close_orphaned_runs(exclude=self._active_runs())

    def _finalize(self, job: dict, status: Status, error: str | None) -> None:
        """Close the job and its run if nobody has yet (the driver normally does both)."""
        if self.jobs.finish(job["id"], str(status), error):
            self.jobs.add_event(job["id"], {"type": "job", "status": str(status), "error": error})
        final = self.jobs.get(job["id"])
        self._close_run(final, Status(final["status"]), final["error"])

    def _close_run(self, job: dict, status: Status, error: str | None) -> None:
        """Close what the job left open: its run, or its sweep's runs and the sweep."""
        sweep_id = job.get("sweep_id")
        run_ids = (
            [r["id"] for r in self.store.sweep_runs(sweep_id)] if sweep_id else [job["run_id"]]
        )
        closed = False
        for run_id in run_ids:
            try:
                run = self.store.get_run(run_id)
            except StoreError:
                continue
            if Status(run["status"]) in OPEN:
                self.store.interrupt_open_branches(run_id, error or str(status), status)
                self.store.finish_run(run_id, status, error)
                closed = True
        if sweep_id and Status(self.store.get_sweep(sweep_id)["status"]) in OPEN:
            self.store.set_sweep_status(sweep_id, status, error)
            closed = True
        if closed:
            results = (
                build_sweep_results(self.store, sweep_id)
                if sweep_id
                else build_results(self.store, job["run_id"])
            )
            final = {"type": "final", "status": status, "results": results}
            self.jobs.add_event(job["id"], finite(final))
