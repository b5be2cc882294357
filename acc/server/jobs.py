"""The job runner: a queue of recipe runs, each trained in its own spawned worker process.

The server's process only validates, queues and watches: a dispatcher thread starts queued
jobs while fewer than ``max_concurrent`` run, reaps workers that exit, and closes the run of
a worker that died without closing it (killed, crashed) as failed. Cancelling sets the
worker's stop flag (checked by the Trainer at every loss read-back); a worker that does not
stop within ``cancel_grace`` seconds is terminated. Jobs left active by a previous server are
marked interrupted at start.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from acc.results import build_results
from acc.runner import create_run
from acc.server.jobstore import ACTIVE, JobStore
from acc.server.jsonable import finite
from acc.server.worker import worker_main
from acc.store import OPEN_RUN_STATES, Store, StoreError


class JobNotFound(LookupError):
    """No job with that id."""


class JobConflict(RuntimeError):
    """The job cannot do that in its present state (e.g. cancel a finished job)."""


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    cancel: object  # multiprocessing Event
    cancel_deadline: float | None = None


@dataclass
class JobManager:
    store_root: Path
    max_concurrent: int = 1
    worker_threads: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1))
    device: str = "auto"
    data_dir: str | None = None
    cancel_grace: float = 5.0
    poll_seconds: float = 0.2
    orphan_check_seconds: float = 5.0

    def __post_init__(self) -> None:
        self.store_root = Path(self.store_root)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._next_orphan_check = 0.0

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

    def start(self) -> None:
        for job in self.jobs.with_status(*ACTIVE):
            self._finalize(
                job, "interrupted", f"the server stopped while the job was {job['status']}"
            )
        self._thread = threading.Thread(target=self._loop, name="acc-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching; terminate running workers; mark running and queued jobs
        interrupted (no one is left to run them)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=10)
        for job_id, worker in list(self._workers.items()):
            worker.process.terminate()
            worker.process.join(timeout=10)
            job = self.jobs.get(job_id)
            if job:
                self._finalize(job, "interrupted", "the server stopped while the job was running")
        self._workers.clear()
        for job in self.jobs.with_status("queued"):
            self._finalize(job, "interrupted", "the server stopped before the job started")

    # --- operations --------------------------------------------------------------------------

    def submit(self, recipe: str, params: dict) -> dict:
        """Validate and queue. Raises RegistryError / ParamsError / DataError on bad input."""
        run_id = create_run(self.store, recipe, params, self.device, self.data_dir, queued=True)
        job_id = self.jobs.create(run_id, recipe, params)
        self.jobs.add_event(job_id, {"type": "job", "status": "queued", "run_id": run_id})
        with self._wake:
            self._wake.notify_all()
        return self.get(job_id)

    def get(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return self._flag(job)

    def list(self) -> list[dict]:
        return [self._flag(job) for job in self.jobs.list()]

    def _flag(self, job: dict) -> dict:
        worker = self._workers.get(job["id"])
        return {
            **job,
            "cancel_requested": worker is not None and worker.cancel_deadline is not None,
        }

    def cancel(self, job_id: str) -> dict:
        job = self.get(job_id)
        if job["status"] not in ACTIVE:
            raise JobConflict(f"job {job_id} is already {job['status']}; nothing to cancel")
        with self._wake:
            worker = self._workers.get(job_id)
            if worker is None:  # still queued: it never started
                self._finalize(job, "cancelled", "cancelled before it started")
            elif worker.cancel_deadline is None:
                worker.cancel.set()
                worker.cancel_deadline = time.monotonic() + self.cancel_grace
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
        while queued and len(self._workers) < self.max_concurrent:
            job = queued.pop(0)
            cancel = self._ctx.Event()
            process = self._ctx.Process(
                target=worker_main,
                name=f"acc-worker-{job['id']}",
                daemon=True,
                args=(str(self.store_root), job["id"], job["run_id"], cancel, self.worker_threads),
            )
            try:
                process.start()
            except Exception as exc:  # noqa: BLE001 - a job that cannot start fails alone
                self._finalize(job, "failed", f"could not start the worker: {exc}")
                continue
            self._workers[job["id"]] = _Worker(process, cancel)
            self.jobs.set_running(job["id"], process.pid)
            self.jobs.add_event(job["id"], {"type": "job", "status": "running", "pid": process.pid})

    def _reap(self) -> None:
        for job_id, worker in list(self._workers.items()):
            deadline = worker.cancel_deadline
            overdue = deadline is not None and time.monotonic() > deadline
            if worker.process.is_alive() and overdue:
                worker.process.terminate()
                worker.process.join(timeout=5)
            if worker.process.is_alive():
                continue
            worker.process.join()
            del self._workers[job_id]
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if worker.cancel_deadline is not None:
                self._finalize(job, "cancelled", "cancelled")
            else:
                self._finalize(job, "failed", _exit_reason(worker.process.exitcode))

    def _close_orphaned_runs(self) -> None:
        """Now and then, close runs whose process died outside any job (a CLI run killed with
        SIGKILL): the page would otherwise poll them forever. Jobs' runs are the reaper's."""
        if time.monotonic() < self._next_orphan_check:
            return
        self._next_orphan_check = time.monotonic() + self.orphan_check_seconds
        active = {job["run_id"] for job in self.jobs.with_status(*ACTIVE)}
        self.store.close_orphaned_runs(exclude=active)

    def _finalize(self, job: dict, status: str, error: str | None) -> None:
        """Close the job and its run if nobody has yet (the worker normally does both)."""
        if self.jobs.finish(job["id"], status, error):
            self.jobs.add_event(job["id"], {"type": "job", "status": status, "error": error})
        final = self.jobs.get(job["id"])
        self._close_run(job["id"], job["run_id"], final["status"], final["error"])

    def _close_run(self, job_id: str, run_id: str, status: str, error: str | None) -> None:
        try:
            run = self.store.get_run(run_id)
        except StoreError:
            return
        if run["status"] not in OPEN_RUN_STATES:
            return
        for branch in self.store.branches(run_id):
            if branch["status"] == "running":
                self.store.finish_branch(branch["id"], status, branch["steps_done"], error)
        self.store.finish_run(run_id, status, error)
        self.jobs.add_event(
            job_id,
            finite(
                {"type": "final", "status": status, "results": build_results(self.store, run_id)}
            ),
        )


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"the worker process died (signal {-exitcode})"
    return f"the worker process exited with code {exitcode} before finishing the job"
