"""``acc list``, ``acc run``, ``acc runs`` and ``acc show``."""

from __future__ import annotations

import json
from typing import Annotated

import torch
import typer
from rich.table import Table

from acc.cli.common import (
    USER_ERRORS,
    CheckpointEveryOption,
    DataDirOption,
    DeviceOption,
    EvalEveryOption,
    ExecutorOption,
    GpusPerBranchOption,
    JsonOption,
    LrOption,
    OptimizerOption,
    ParamOption,
    RayAddressOption,
    SeedsOption,
    StepsOption,
    StoreOption,
    ThreadsOption,
    WorkersOption,
    app,
    build_executor,
    check_json_path,
    checkpoint_interval,
    collect_params,
    console,
    fail,
    interrupt_on_signals,
    open_store,
    read_store,
    render_sweep,
    train_and_report,
)
from acc.recipes import recipe_registry
from acc.report import (
    branches_table,
    comparison_table,
    failures,
    list_metrics_table,
    metrics_table,
)
from acc.results import build_results, build_sweep_results
from acc.runner import (
    NothingToResume,
    ResumeError,
    check_resumable,
    create_run,
    execute_run,
    split_config,
    validate_params,
)
from acc.store import Store, StoreError
from acc.sweep import arms


@app.command("list")
def list_recipes() -> None:
    """List the recipes and their parameters."""
    registry = recipe_registry()
    for path, error in registry.import_errors.items():
        console.print(f"[red]could not import {path}:[/red] {error}")
    table = Table("recipe", "description", "parameters (defaults)")
    for name in registry.names():
        recipe = registry.get(name)
        defaults = ", ".join(f"{k}={v.default}" for k, v in recipe.Params.model_fields.items())
        table.add_row(name, recipe.description, defaults)
    console.print(table)


@app.command()
def run(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe name (see `acc list`); omit with --resume")
    ] = None,
    steps: StepsOption = None,
    seeds: SeedsOption = None,
    eval_every: EvalEveryOption = None,
    optimizer: OptimizerOption = None,
    lr: LrOption = None,
    param: ParamOption = None,
    device: DeviceOption = "auto",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    json_path: JsonOption = None,
    threads: ThreadsOption = None,
    workers: WorkersOption = 1,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    gpus_per_branch: GpusPerBranchOption = 0.0,
    checkpoint_every: CheckpointEveryOption = None,
    resume: Annotated[
        str | None,
        typer.Option(help="finish an interrupted run: RUN_ID (see `acc runs`)", metavar="RUN_ID"),
    ] = None,
) -> None:
    """Run a recipe (or resume a run) with live progress, then print the comparison table."""
    if threads:
        torch.set_num_threads(threads)
    interrupt_on_signals()
    params = collect_params(param, steps, seeds, eval_every, optimizer, lr)
    check_json_path(json_path)
    results_store = read_store(store, to_write=True) if resume else open_store(store)
    try:
        if resume:
            run_id, branches = _prepare_resume(results_store, resume, recipe, params)
        else:
            if recipe is None:
                raise typer.BadParameter("name a recipe (see `acc list`), or --resume RUN_ID")
            branches = _count_branches(recipe, params)
        pool = build_executor(executor, workers, branches, threads, ray_address, gpus_per_branch)
        if not resume:
            run_id = create_run(
                results_store,
                recipe,
                params,
                "cuda" if gpus_per_branch else device,
                data_dir,
                checkpoint_every=checkpoint_interval(checkpoint_every),
                remote_device=bool(gpus_per_branch),
            )
    except NothingToResume as done:
        console.print(str(done))
        return
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    console.print(
        f"run [bold]{run_id}[/bold] · {pool.name} executor, {pool.workers} at a time · "
        f"store {results_store.root.resolve()}"
    )
    train_and_report(
        results_store,
        run_id,
        pool,
        execute_run,
        render_run,
        json_path,
        f"acc run --resume {run_id}",
    )


def _count_branches(recipe_name: str, params: dict) -> int:
    recipe = recipe_registry().get(recipe_name)
    p = validate_params(recipe, params)
    return len(p.seeds) * len(arms(recipe(), p, None))


def _prepare_resume(store: Store, run_id: str, recipe: str | None, params: dict):
    run = check_resumable(store, run_id, params)
    if recipe is not None and recipe != run["recipe"]:
        raise ResumeError(f"run {run_id} is a {run['recipe']} run, not {recipe}")
    p = validate_params(recipe_registry().get(run["recipe"]), split_config(run["config"])[0])
    planned = len(p.seeds) * len(
        arms(recipe_registry().get(run["recipe"])(), p, run["config"].get("cells"))
    )
    done = sum(1 for b in store.branches(run_id) if b["status"] == "completed")
    console.print(f"resuming {run_id}: {planned - done} of {planned} branches to finish")
    return run_id, planned - done


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="a run or sweep id (see `acc runs`, `acc sweeps`)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the results JSON")] = False,
    store: StoreOption = None,
) -> None:
    """Print a past run's (or sweep's) tables, or its results JSON."""
    results_store = read_store(store)
    try:
        results = build_results(results_store, run_id)
        render = render_run
    except StoreError:
        try:
            results = build_sweep_results(results_store, run_id)
            render = render_sweep
        except StoreError:
            raise fail(f"no run or sweep {run_id!r} in the store at {results_store.root}") from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        render(results)


@app.command()
def runs(
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
) -> None:
    """List past runs in the store (a sweep's runs name their sweep)."""
    table = Table("run id", "recipe", "status", "sweep")
    for row in read_store(store).list_runs(limit):
        table.add_row(row["id"], row["recipe"], row["status"], row["sweep_id"] or "")
    console.print(table)


def render_run(results: dict) -> None:
    console.print(metrics_table(results))
    if (lists := list_metrics_table(results)) is not None:
        console.print(lists)
    console.print(branches_table(results))
    if results["comparisons"]:
        console.print(comparison_table(results))
    for line in failures(results):
        console.print(f"[red]{line}[/red]")
    if results.get("error"):
        console.print(f"[red]run {results['status']}: {results['error']}[/red]")
