"""Sweeps: start one, list them, read one's results (cells fill in as branches finish), resume.

A sweep is trained by a job like a run is: its job's ``sweep_id`` names it, and its event
stream is the job's (``/api/jobs/{id}/events``).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from acc.jsonable import finite
from acc.results import build_sweep_results
from acc.server.routes_jobs import manager_of, require_recipe
from acc.server.schemas import Job, SweepDeleted, SweepRequest, SweepSummary

router = APIRouter(prefix="/api/sweeps", tags=["sweeps"])
NOT_FOUND = {404: {"description": "no such sweep in the store"}}


@router.post(
    "",
    status_code=202,
    response_model=Job,
    responses={404: {"description": "unknown recipe"}, 422: {"description": "invalid axes"}},
)
def start_sweep(body: SweepRequest, request: Request) -> dict:
    """Validate and queue a sweep: ``grid`` axes multiply, ``zip`` axes advance together."""
    require_recipe(body.recipe)
    return manager_of(request).submit_sweep(
        body.recipe, body.params, body.grid, body.zip, body.yes, body.deltas, body.correction
    )


@router.get("", response_model=list[SweepSummary])
def list_sweeps(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
    manager = manager_of(request)
    jobs = manager.jobs.job_ids_by_run()  # a sweep's job has the sweep's id as its run id
    return [{**s, "job_id": jobs.get(s["id"])} for s in manager.store.list_sweeps(limit)]


@router.get("/{sweep_id}", responses=NOT_FOUND)
def get_sweep(sweep_id: str, request: Request) -> dict:
    """The sweep results JSON of DESIGN.md (settings with their standard runs, cells)."""
    manager = manager_of(request)
    results = build_sweep_results(manager.store, sweep_id)
    results["job_id"] = manager.jobs.job_ids_by_run().get(sweep_id)
    return finite(results)


@router.delete(
    "/{sweep_id}",
    response_model=SweepDeleted,
    responses={**NOT_FOUND, 409: {"description": "the sweep, one of its runs or its job is open"}},
)
def delete_sweep(sweep_id: str, request: Request) -> dict:
    """Delete a finished sweep with all its runs: their records, jobs and checkpoint files.
    A queued or running sweep is refused (cancel its job first)."""
    return {"deleted": sweep_id, **manager_of(request).store.delete_sweep(sweep_id)}


@router.post(
    "/{sweep_id}/resume",
    status_code=202,
    response_model=Job,
    responses={**NOT_FOUND, 409: {"description": "still running, or nothing left to resume"}},
)
def resume_sweep(sweep_id: str, request: Request) -> dict:
    """Queue a job that finishes a stopped sweep."""
    return manager_of(request).resume_sweep(sweep_id)
