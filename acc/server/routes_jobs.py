"""Jobs: start a recipe, list, inspect, cancel, and follow its event stream (SSE).

The stream tails the job's event log in the store from the client's Last-Event-ID (or
``?after=N``), so a reconnecting page resumes where it left off and misses nothing. It ends
once the job has finished and every event has been sent; a reconnect after that gets 204,
which tells EventSource to stop.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from acc.recipes import recipe_registry
from acc.server.jobs import JobManager
from acc.server.schemas import Job, JobRequest
from acc.status import OPEN

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
POLL_SECONDS = 0.5  # how often an idle stream looks for new events
HEARTBEAT_SECONDS = 15.0


def manager_of(request: Request) -> JobManager:
    """The app's job manager (and through it the store): every route module asks here."""
    return request.app.state.manager


@router.post(
    "",
    status_code=202,
    response_model=Job,
    responses={404: {"description": "unknown recipe"}, 422: {"description": "invalid parameters"}},
)
def start_job(body: JobRequest, request: Request) -> dict:
    """Queue a recipe run; its branches train in worker processes. Answers at once (202)."""
    require_recipe(body.recipe)
    return manager_of(request).submit(
        body.recipe, body.params, body.deltas, body.correction, body.checkpoint_every
    )


def require_recipe(name: str) -> None:
    """404 naming the known recipes, before anything is validated or opened."""
    if name not in recipe_registry().items:
        known = ", ".join(recipe_registry().names())
        raise HTTPException(404, f"unknown recipe {name!r}; known recipes: {known}")


@router.get("", response_model=list[Job])
def list_jobs(
    request: Request,
    response: Response,
    limit: int = Query(100, ge=1, le=1000, description="newest first"),
) -> list[dict]:
    """The newest ``limit`` jobs; the ``X-Total-Count`` header says how many there are."""
    manager = manager_of(request)
    response.headers["X-Total-Count"] = str(manager.jobs.count())
    return manager.list(limit)


@router.get("/{job_id}", response_model=Job, responses={404: {"description": "unknown job"}})
def get_job(job_id: str, request: Request) -> dict:
    return manager_of(request).get(job_id)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=Job,
    responses={
        404: {"description": "unknown job"},
        409: {"description": "the job has already finished"},
    },
)
def cancel_job(job_id: str, request: Request) -> dict:
    """Ask a running job to stop (it is terminated if it does not), or drop a queued one."""
    return manager_of(request).cancel(job_id)


@router.get(
    "/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {}}},
        204: {"description": "finished, nothing after that id"},
        404: {"description": "unknown job"},
    },
)
async def job_events(
    job_id: str,
    request: Request,
    after: int | None = Query(None, ge=0, le=2**62, description="resume after this event id"),
    last_event_id: str | None = Header(None),
) -> Response:
    """Server-Sent Events: every event of the job, each with its sequence number as id."""
    manager = manager_of(request)
    job = await run_in_threadpool(manager.get, job_id)
    start = _resume_point(after, last_event_id)
    if job["status"] not in OPEN:
        last = await run_in_threadpool(manager.jobs.last_event_id, job_id)
        if last <= start:
            return Response(status_code=204)
    return StreamingResponse(
        _stream(manager, job_id, start, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(after: int | None, last_event_id: str | None) -> int:
    if after is not None:
        return after
    if last_event_id is None or not last_event_id.strip():
        return 0
    if not last_event_id.strip().isdigit() or len(last_event_id.strip()) > 18:
        raise HTTPException(422, "Last-Event-ID must be a non-negative integer event id")
    return int(last_event_id)


async def _stream(manager: JobManager, job_id: str, last: int, request: Request):
    yield "retry: 2000\n\n"
    quiet = 0.0
    while not await request.is_disconnected():
        rows = await run_in_threadpool(manager.jobs.events_after, job_id, last)
        for seq, data in rows:
            yield f"id: {seq}\ndata: {data}\n\n"
            last = seq
        if rows:
            quiet = 0.0
            continue
        job = await run_in_threadpool(manager.jobs.get, job_id)
        if job is None or job["status"] not in OPEN:
            if not await run_in_threadpool(manager.jobs.events_after, job_id, last):
                return
            continue
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
        if quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"
