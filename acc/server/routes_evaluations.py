"""Checkpoint evaluations in the background (the inspector's): start one, read how far it
is, cancel it. ``POST /api/checkpoints/{id}/evaluate`` still answers with the metrics in one
request, for scripts; the page uses these so that an 80 s evaluation shows its progress and
can be stopped (acc.server.evaluations)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request

from acc.server.evaluations import Evaluations
from acc.server.inspector import prepare_evaluation, run_evaluation
from acc.server.routes_jobs import manager_of
from acc.server.schemas import BackgroundEvaluation, EvaluateRequest

router = APIRouter(prefix="/api", tags=["inspector"])
NOT_FOUND = {404: {"description": "no such checkpoint or evaluation"}}


def evaluations_of(request: Request) -> Evaluations:
    return request.app.state.evaluations


@router.post(
    "/checkpoints/{ckpt_id}/evaluations",
    status_code=202,
    response_model=BackgroundEvaluation,
    responses={**NOT_FOUND, 422: {"description": "unknown task or bad parameters"}},
)
def start_evaluation(ckpt_id: str, body: EvaluateRequest, request: Request) -> dict:
    """Start evaluating one task on one checkpoint (the held-out test split) and answer at
    once; bad input is refused here (422), not in the background."""
    model, task = prepare_evaluation(
        manager_of(request).store, ckpt_id, body.task, body.params, request.app.state.datasets
    )
    kind = (body.task, json.dumps(body.params, sort_keys=True), type(model).__name__)
    return evaluations_of(request).start(
        ckpt_id, body.task, body.params, kind, lambda: run_evaluation(model, task, body.task)
    )


@router.get(
    "/evaluations/{evaluation_id}", response_model=BackgroundEvaluation, responses=NOT_FOUND
)
def get_evaluation(evaluation_id: str, request: Request) -> dict:
    """Its status (running, cancelling, completed, failed, cancelled), seconds so far, the
    seconds the same evaluation took last time, and its metrics once completed."""
    return evaluations_of(request).get(evaluation_id)


@router.post(
    "/evaluations/{evaluation_id}/cancel",
    status_code=202,
    response_model=BackgroundEvaluation,
    responses={**NOT_FOUND, 409: {"description": "already ended"}},
)
def cancel_evaluation(evaluation_id: str, request: Request) -> dict:
    """Stop a running evaluation (cancelling, then cancelled within moments)."""
    return evaluations_of(request).cancel(evaluation_id)
