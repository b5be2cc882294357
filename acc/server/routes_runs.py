"""Runs and checkpoints: results, time series, checkpoint tree, pictures, and the inspector.

Everything is read from the store, so runs started from the CLI show up here as well.
Endpoints that load models or data are plain ``def`` routes: FastAPI runs them in its thread
pool, never on the event loop that serves the live streams.
"""

from __future__ import annotations

import torch
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from acc.export import ExportFormat, export_name, export_zip, json_bytes
from acc.jsonable import finite
from acc.results import build_results
from acc.series import run_series
from acc.server.images import (
    filter_grid,
    first_filters,
    png,
    reconstruction_strip,
    traversal_grid,
)
from acc.server.inspector import (
    dataset_view,
    describe_checkpoint,
    evaluate_checkpoint,
    load_model,
    task_catalog,
)
from acc.server.routes_jobs import manager_of
from acc.server.schemas import (
    EvaluateRequest,
    Evaluation,
    Job,
    RunDeleted,
    RunLabel,
    RunSummary,
)
from acc.status import Status

router = APIRouter(prefix="/api", tags=["runs"])
NOT_FOUND = {404: {"description": "no such run or checkpoint in the store"}}
PNG = {"content": {"image/png": {}}, "description": "a PNG image"}


@router.get("/runs", response_model=list[RunSummary])
def list_runs(
    request: Request,
    response: Response,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(
        0, ge=0, le=10**9, description="skip this many (newest first): the next page"
    ),
    recipe: str | None = Query(None, max_length=100, description="only this recipe's runs"),
    status: Status | None = Query(None, description="only runs in this status"),
    q: str | None = Query(
        None, max_length=200, description="only runs whose id, name or note holds this (any case)"
    ),
) -> list[dict]:
    """The newest runs matching the filters, ``limit`` at a time from ``offset``; the
    ``X-Total-Count`` header says how many match in all (for paging)."""
    manager = manager_of(request)
    jobs = manager.jobs.job_ids_by_run()
    runs = manager.store.list_runs(limit, recipe=recipe, status=status, search=q, offset=offset)
    response.headers["X-Total-Count"] = str(
        manager.store.count_runs(recipe=recipe, status=status, search=q)
    )
    return [{**run, "job_id": jobs.get(run["id"])} for run in runs]


@router.get("/runs/{run_id}", responses=NOT_FOUND)
def get_run(run_id: str, request: Request) -> dict:
    """The results JSON of DESIGN.md (conditions, per-seed metrics, mean/std, comparison)."""
    manager = manager_of(request)
    results = build_results(manager.store, run_id)
    results["job_id"] = manager.jobs.job_ids_by_run().get(run_id)
    return finite(results)


@router.patch(
    "/runs/{run_id}",
    response_model=RunSummary,
    responses={**NOT_FOUND, 422: {"description": "a name or note too long, or unknown fields"}},
)
def label_run(run_id: str, body: RunLabel, request: Request) -> dict:
    """Name a run or write a note on it: the fields given change ("" or null clears one),
    those left out stay as they are. Returns the run's summary."""
    manager = manager_of(request)
    given = {key: getattr(body, key) or "" for key in body.model_fields_set}
    run = manager.store.label_run(run_id, **given)
    return {**run, "job_id": manager.jobs.job_ids_by_run().get(run_id)}


@router.delete(
    "/runs/{run_id}",
    response_model=RunDeleted,
    responses={**NOT_FOUND, 409: {"description": "queued or running, or part of a sweep"}},
)
def delete_run(run_id: str, request: Request) -> dict:
    """Delete a finished run: its records, its jobs and its checkpoint files. A queued or
    running run is refused (cancel it first), and so is one of a sweep's runs."""
    return {"deleted": run_id, **manager_of(request).store.delete_run(run_id)}


@router.post(
    "/runs/{run_id}/resume",
    status_code=202,
    response_model=Job,
    responses={**NOT_FOUND, 409: {"description": "still running, or nothing left to resume"}},
)
def resume_run(run_id: str, request: Request) -> dict:
    """Queue a job that finishes a stopped run: completed branches are kept, unfinished ones
    go on from their newest resume point, never-started ones start."""
    return manager_of(request).resume(run_id)


@router.get("/runs/{run_id}/series", responses=NOT_FOUND)
def get_series(run_id: str, request: Request) -> dict:
    """Loss and periodic-metric curves per branch (condition and seed)."""
    return finite(run_series(manager_of(request).store, run_id))


@router.get(
    "/runs/{run_id}/export",
    responses={
        **NOT_FOUND,
        200: {
            "content": {"application/json": {}, "application/zip": {}},
            "description": "the JSON file, or a zip of the CSV tables or TensorBoard logs",
        },
    },
)
def export_run(
    run_id: str,
    request: Request,
    format: ExportFormat = Query(ExportFormat.json, description="json, csv or tensorboard"),
) -> Response:
    """A download of the run (as far as it got): ``<run_id>.json``, or ``<run_id>-csv.zip``
    (final_metrics, losses, evals) or ``<run_id>-tensorboard.zip`` (one event log per branch)."""
    store = manager_of(request).store
    if format is ExportFormat.json:
        body, media, name = json_bytes(store, run_id), "application/json", f"{run_id}.json"
    else:
        body, media = export_zip(store, run_id, format), "application/zip"
        name = f"{export_name(run_id, format)}.zip"
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/runs/{run_id}/checkpoints", responses=NOT_FOUND)
def get_checkpoints(run_id: str, request: Request) -> list[dict]:
    """Every checkpoint of the run with its parent: the tree is init -> one per condition."""
    store = manager_of(request).store
    store.get_run(run_id)
    out = []
    for row in store.checkpoints.of_run(run_id):
        meta = store.checkpoints.get(row["id"]).metadata
        out.append(
            {
                **{k: v for k, v in row.items() if k != "path"},
                "condition": meta.get("condition"),
                "model": meta.get("model", {}).get("class"),
                "gating": meta.get("gating"),
            }
        )
    return out


@router.get("/checkpoints/{ckpt_id}", responses=NOT_FOUND)
def get_checkpoint(ckpt_id: str, request: Request) -> dict:
    """Metadata, the model's layer names (for layer tasks) and the data view it takes."""
    return finite(describe_checkpoint(manager_of(request).store, ckpt_id))


@router.get("/checkpoints/{ckpt_id}/filters.png", responses={**NOT_FOUND, 200: PNG})
def get_filters(ckpt_id: str, request: Request) -> Response:
    """The first conv layer's kernels, or the first Linear layer's rows as 28x28 images."""
    model, _ = load_model(manager_of(request).store, ckpt_id)
    layer, tiles = first_filters(model)
    return Response(
        png(filter_grid(tiles)),
        media_type="image/png",
        headers={"X-Layer": layer, "Cache-Control": "max-age=3600"},
    )


@router.get("/checkpoints/{ckpt_id}/reconstructions.png", responses={**NOT_FOUND, 200: PNG})
def get_reconstructions(
    ckpt_id: str, request: Request, n: int = Query(8, ge=1, le=32, description="test images")
) -> Response:
    """The first ``n`` test images (top row) and the model's reconstructions (bottom row)."""
    model, _ = load_model(manager_of(request).store, ckpt_id)
    images = request.app.state.datasets.get(dataset_view(model)).test.images[:n]
    with torch.no_grad():
        pixels = reconstruction_strip(model, images)
    return Response(png(pixels), media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get("/checkpoints/{ckpt_id}/traversals.png", responses={**NOT_FOUND, 200: PNG})
def get_traversals(
    ckpt_id: str,
    request: Request,
    group: str = Query(..., description="factor group to traverse, e.g. thickness"),
    n: int = Query(6, ge=1, le=16, description="test images (one row each)"),
) -> Response:
    """A factor-slot model's latent traversal of one group: a row per test image, a column per
    step (t = -2..2 standard deviations along the group's main direction over the test set)."""
    model, _ = load_model(manager_of(request).store, ckpt_id)
    images = request.app.state.datasets.get(dataset_view(model)).test.images
    pixels = traversal_grid(model, images, group, n)
    return Response(png(pixels), media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get("/tasks")
def list_tasks() -> list[dict]:
    """Every registered task type with its settable parameters."""
    return task_catalog()


@router.post(
    "/checkpoints/{ckpt_id}/evaluate",
    response_model=Evaluation,
    responses={**NOT_FOUND, 422: {"description": "unknown task or bad parameters"}},
)
def evaluate(ckpt_id: str, body: EvaluateRequest, request: Request) -> dict:
    """Evaluate one task on one checkpoint, on the held-out test split."""
    metrics = evaluate_checkpoint(
        manager_of(request).store, ckpt_id, body.task, body.params, request.app.state.datasets
    )
    return {
        "checkpoint": ckpt_id,
        "task": body.task,
        "params": body.params,
        "metrics": finite(metrics),
    }
