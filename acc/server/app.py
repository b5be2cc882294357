"""The FastAPI application: API routers, the dashboard page, and errors mapped to 4xx.

``create_app`` wires one JobManager (started and stopped with the app) and one dataset cache
to the routes. Every error a caller can provoke has a status and a message; the handlers
below are the single place where the library's exceptions become HTTP answers.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from acc.checkpoints import CheckpointDamaged, CheckpointError
from acc.data import DataError
from acc.decisions import DecisionError
from acc.eval_metric import EvalMetric
from acc.executors import ExecutorError
from acc.jsonable import finite
from acc.recipes import recipe_registry
from acc.recipes.base import condition_descriptions
from acc.registry import RegistryError
from acc.runner import NothingToResume, ParamsError, ResumeError, resolve_device
from acc.server import routes_evaluations, routes_jobs, routes_runs, routes_sweeps
from acc.server.evaluations import EvaluationFinished, EvaluationNotFound, Evaluations
from acc.server.guard import Guard
from acc.server.images import ImageError
from acc.server.inspector import DatasetCache, InspectError
from acc.server.jobs import JobConflict, JobManager, JobNotFound, QueueFull
from acc.server.lease import StoreBusy
from acc.server.schemas import RecipeList
from acc.server.unique_keys import UniqueKeys
from acc.status import OPEN, Status
from acc.store import RunInUse, Store, StoreError, database_problem
from acc.sweep import SweepError, gating_params

STATIC = Path(__file__).parent / "static"


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: text a client sent that UTF-8 cannot hold (a lone surrogate,
    which a JSON escape can carry) goes back escaped, not as a failure to answer (a 500)."""

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def plotly_js() -> Path | None:
    """plotly.min.js from the installed plotly package: served locally, never from a CDN."""
    try:
        import plotly
    except ImportError:
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def create_app(
    store_root: str | Path,
    max_concurrent: int = 1,
    worker_threads: int | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    executor: str = "process",
    workers: int = 1,
    ray_address: str | None = None,
    gpus_per_branch: float = 0.0,
    allowed_hosts: list[str] | None = None,
    token: str | None = None,
) -> FastAPI:
    """The dashboard app. ``allowed_hosts``: answer only to these Host names (and loopback's;
    None: to any, for tests and embedding); ``token``: required from every client (Guard)."""
    if executor not in ("process", "ray"):
        raise ExecutorError(
            f"the server runs jobs with the process or ray executor, not {executor!r} "
            "(training inline would stall the server)"
        )
    if not gpus_per_branch:
        resolve_device(device)  # fail at start, not at the first job
    Store(store_root).close()  # creates the store, or a clear StoreError if it cannot
    manager = JobManager(
        Path(store_root),
        max_concurrent=max_concurrent,
        worker_threads=worker_threads,
        device=device,
        data_dir=data_dir,
        executor=executor,
        workers=max(1, workers),
        ray_address=ray_address,
        gpus_per_branch=gpus_per_branch,
    )
    manager.connect()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    app = FastAPI(
        title="ACC",
        version="0.1.0",
        lifespan=lifespan,
        description="Run recipes, watch them live, compare conditions.",
        default_response_class=SafeJSONResponse,
    )
    app.state.manager = manager
    app.state.datasets = DatasetCache(data_dir)
    app.state.evaluations = Evaluations()
    _add_error_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(routes_runs.router)
    app.include_router(routes_sweeps.router)
    app.include_router(routes_evaluations.router)
    _add_page(app)
    app.add_middleware(UniqueKeys)  # inside the Guard: nobody unknown gets a body read
    if allowed_hosts is not None or token is not None:
        app.add_middleware(Guard, allowed_hosts=allowed_hosts or [], token=token)
    return app


def _add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """Browsers ask for /favicon.ico whatever the page links: the same icon, not a 404."""
        return FileResponse(
            STATIC / "favicon.svg",
            media_type="image/svg+xml",
            headers={"Cache-Control": "max-age=86400"},
        )

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        path = plotly_js()
        if path is None:
            raise HTTPException(404, "plotly is not installed: pip install plotly")
        return FileResponse(
            path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    @app.get("/api/recipes", response_model=RecipeList, tags=["recipes"])
    def recipes() -> dict:
        """Every recipe with its conditions, hypotheses and parameters (with defaults)."""
        registry = recipe_registry()
        return {
            "recipes": [_recipe_info(registry.get(n)) for n in registry.names()],
            "import_errors": registry.import_errors,
        }

    @app.get("/api/statuses", tags=["recipes"])
    def statuses() -> dict:
        """Every status a run, branch or job can have, and which of them are still open."""
        return {"values": [s.value for s in Status], "open": sorted(s.value for s in OPEN)}

    @app.get("/api/metrics", tags=["recipes"])
    def metrics() -> list[dict]:
        """Every metric key with its label, which direction is better (null: neither) and
        whether it counts units (shown without decimals where whole)."""
        return [
            {
                "key": m.value,
                "label": m.label,
                "higher_is_better": m.higher_is_better,
                "count": m.is_count,
            }
            for m in EvalMetric
        ]

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@cache
def _recipe_info(recipe) -> dict:
    """A recipe's description for the form; cached (schemas do not change while serving)."""
    schema = recipe.Params.model_json_schema()
    gating = gating_params(recipe.Params)
    params = []
    for name, field in recipe.Params.model_fields.items():
        prop = schema["properties"].get(name, {})
        params.append(
            {
                "name": name,
                "type": "enum" if "enum" in prop else prop.get("type", "any"),
                "choices": prop.get("enum"),
                "default": field.default,
                "description": field.description,
                "gating": name in gating,
            }
        )
    return {
        "name": recipe.name,
        "description": recipe.description,
        "conditions": condition_descriptions(recipe(), recipe.Params()),
        "hypotheses": [h.to_dict() for h in recipe.hypotheses],
        "params": params,
        "params_schema": schema,
    }


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int):
        async def handle(_request: Request, exc: Exception) -> SafeJSONResponse:
            return SafeJSONResponse({"detail": str(exc)}, status_code=status)

        return handle

    for exc_type, status in (
        (StoreError, 404),
        (RunInUse, 409),  # a StoreError too: the handler of the closest class answers
        (CheckpointDamaged, 409),
        (CheckpointError, 404),
        (JobNotFound, 404),
        (ResumeError, 409),
        (NothingToResume, 409),
        (SweepError, 422),
        (DecisionError, 422),
        (RegistryError, 404),
        (FileNotFoundError, 404),
        (JobConflict, 409),
        (StoreBusy, 409),
        (QueueFull, 422),
        (InspectError, 422),
        (EvaluationNotFound, 404),
        (EvaluationFinished, 409),
        (ImageError, 422),
        (DataError, 503),
    ):
        app.add_exception_handler(exc_type, handler(status))

    async def params_error(_request: Request, exc: ParamsError) -> SafeJSONResponse:
        cause = exc.__cause__
        errors = (
            [
                {"loc": ["body", "params", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in cause.errors()
            ]
            if cause is not None
            else []
        )
        return SafeJSONResponse({"detail": str(exc), "errors": errors}, status_code=422)

    app.add_exception_handler(ParamsError, params_error)

    async def store_damaged(request: Request, exc: sqlite3.DatabaseError) -> SafeJSONResponse:
        """The store's database failed under the server (corrupted, or locked for too long)."""
        database = request.app.state.manager.store_root / "acc.sqlite"
        return SafeJSONResponse({"detail": database_problem(database, exc)}, status_code=503)

    app.add_exception_handler(sqlite3.DatabaseError, store_damaged)

    async def invalid_request(_request: Request, exc: RequestValidationError) -> SafeJSONResponse:
        """FastAPI's 422, minus what cannot be JSON: NaN/Infinity inputs, exception objects."""
        errors = [
            {
                "loc": list(e["loc"]),
                "msg": e["msg"],
                "type": e["type"],
                "input": finite(jsonable_encoder(e.get("input"))),
            }
            for e in exc.errors()
        ]
        return SafeJSONResponse({"detail": errors}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid_request)
