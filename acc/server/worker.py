"""The worker: one spawned process per job, so training never runs in the server's process.

It opens the store itself, runs the job's run through the same runner the CLI uses, and
appends every event to the job's event log, which is how the server (and through it the
page) sees progress. Torch is limited to a few threads so the server keeps a core.
"""

from __future__ import annotations

import traceback

import torch

from acc.runner import execute_run
from acc.server.jobstore import JobStore
from acc.server.jsonable import finite
from acc.store import Store


def worker_main(store_root: str, job_id: str, run_id: str, cancel, threads: int) -> None:
    """Entry point of the worker process. ``cancel`` is a multiprocessing Event."""
    torch.set_num_threads(threads)
    jobs = JobStore(store_root)
    store = Store(store_root)
    status, error = "failed", None
    try:
        results = execute_run(
            store,
            run_id,
            on_event=lambda e: jobs.add_event(job_id, finite(e)),
            should_stop=cancel.is_set,
        )
        status, error = results["status"], results.get("error")
        jobs.add_event(job_id, finite({"type": "final", "status": status, "results": results}))
    except BaseException as exc:  # recorded in the job; the server's reaper closes the run
        error = f"{type(exc).__name__}: {exc}"
        jobs.add_event(job_id, {"type": "log", "message": traceback.format_exc()})
        raise
    finally:
        if jobs.finish(job_id, status, error):
            jobs.add_event(job_id, {"type": "job", "status": status, "error": error})
        jobs.close()
        store.close()
