"""``acc list``, ``acc run``, ``acc runs``, ``acc show``, ``acc label`` and ``acc delete``."""

from __future__ import annotations

import json
from typing import Annotated

import torch
import typer
from rich.markup import escape
from rich.table import Column, Table

from acc.cli.common import (
    USER_ERRORS,
    CheckpointEveryOption,
    CorrectionOption,
    DataDirOption,
    DeltaOption,
    DeviceOption,
    EvalEveryOption,
    ExecutorOption,
    GpusPerBranchOption,
    JsonOption,
    LrOption,
    NumSeedsOption,
    OptimizerOption,
    ParamOption,
    RayAddressOption,
    SeedsOption,
    StackSizeOption,
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
    decision_options,
    fail,
    interrupt_on_signals,
    open_when_ready,
    read_store,
    render_sweep,
    train_and_report,
)
from acc.decisions import DecisionError
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
from acc.store import Store, StoreError, check_label, parse_status
from acc.sweep import arms

NameOption = Annotated[
    str | None, typer.Option(help='a short name for the run ("" clears it)', metavar="TEXT")
]
NoteOption = Annotated[
    str | None, typer.Option(help='a note on the run ("" clears it)', metavar="TEXT")
]


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
    num_seeds: NumSeedsOption = None,
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
    stack_size: StackSizeOption = None,
    ray_address: RayAddressOption = None,
    gpus_per_branch: GpusPerBranchOption = 0.0,
    checkpoint_every: CheckpointEveryOption = None,
    resume: Annotated[
        str | None,
        typer.Option(help="finish an interrupted run: RUN_ID (see `acc runs`)", metavar="RUN_ID"),
    ] = None,
    name: NameOption = None,
    note: NoteOption = None,
    delta: DeltaOption = None,
    correction: CorrectionOption = None,
) -> None:
    """Run a recipe (or resume a run) with live progress, then print the comparison table."""
    if threads:
        torch.set_num_threads(threads)
    interrupt_on_signals()
    params = collect_params(param, steps, seeds, eval_every, optimizer, lr, num_seeds)
    deltas, correction = decision_options(delta, correction)
    if resume and (deltas or correction):
        raise fail(
            "a resumed run keeps the --delta and --correction it started with; read it with "
            f"others (nothing retrains): acc show {resume} --delta ... --correction ..."
        )
    check_json_path(json_path)
    try:
        check_label(name, note)
    except ValueError as exc:
        raise fail(str(exc)) from None
    results_store = read_store(store, to_write=True) if resume else None
    try:
        if resume:
            run_id, branches = _prepare_resume(results_store, resume, recipe, params)
            if name is not None or note is not None:
                results_store.label_run(run_id, name=name, note=note)
        else:
            if recipe is None:
                raise typer.BadParameter("name a recipe (see `acc list`), or --resume RUN_ID")
            branches = _count_branches(recipe, params)
        pool = build_executor(
            executor, workers, branches, threads, ray_address, gpus_per_branch, stack_size
        )
        if not resume:
            results_store, run_id = open_when_ready(
                pool,
                store,
                lambda opened: create_run(
                    opened,
                    recipe,
                    params,
                    "cuda" if gpus_per_branch else device,
                    data_dir,
                    checkpoint_every=checkpoint_interval(checkpoint_every),
                    remote_device=bool(gpus_per_branch),
                    name=name,
                    note=note,
                    deltas=deltas,
                    correction=correction,
                ),
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
    delta: DeltaOption = None,
    correction: CorrectionOption = None,
) -> None:
    """Print a past run's (or sweep's) tables, or its results JSON; --delta and --correction
    re-decide its hypotheses from the stored per-seed metrics (nothing retrains)."""
    deltas, correction = decision_options(delta, correction)
    results_store = read_store(store)
    try:
        results, render = read_results(results_store, run_id, deltas, correction)
    except DecisionError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        render(results)


def read_results(store: Store, run_id: str, deltas: dict, correction: str | None):
    """A run's results JSON and its renderer, or a sweep's; a clear exit for an unknown id."""
    try:
        return build_results(store, run_id, deltas, correction), render_run
    except StoreError:
        try:
            return build_sweep_results(store, run_id, deltas, correction), render_sweep
        except StoreError:
            raise fail(f"no run or sweep {run_id!r} in the store at {store.root}") from None


@app.command()
def runs(
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
    recipe: Annotated[str | None, typer.Option(help="only this recipe's runs")] = None,
    status: Annotated[
        str | None, typer.Option(help="only runs in this status (completed, interrupted, ...)")
    ] = None,
    search: Annotated[
        str | None, typer.Option(help="only runs whose id, name or note holds this (any case)")
    ] = None,
) -> None:
    """List past runs in the store (a sweep's runs name their sweep)."""
    try:
        wanted = None if status is None else parse_status(status)
    except ValueError as exc:
        raise fail(str(exc)) from None
    table = Table(
        Column("run id", no_wrap=True),
        Column("name", max_width=40, overflow="ellipsis"),
        "recipe",
        "status",
        "sweep",
    )
    for row in read_store(store).list_runs(limit, recipe=recipe, status=wanted, search=search):
        name = escape(row["name"] or "")
        table.add_row(row["id"], name, row["recipe"], row["status"], row["sweep_id"] or "")
    console.print(table)


@app.command()
def label(
    run_id: Annotated[str, typer.Argument(help="a run id (see `acc runs`)")],
    name: NameOption = None,
    note: NoteOption = None,
    store: StoreOption = None,
) -> None:
    """Name a run or write a note on it (what is not given stays as it is)."""
    if name is None and note is None:
        raise fail('give --name TEXT and/or --note TEXT ("" clears one)')
    results_store = read_store(store, to_write=True)
    try:
        run = results_store.label_run(run_id, name=name, note=note)
    except ValueError as exc:  # StoreError (no such run) included
        raise fail(str(exc)) from None
    console.print(f"run {run_id}")
    console.print(f"  name: {escape(run['name'] or '(none)')}")
    console.print(f"  note: {escape(run['note'] or '(none)')}")


@app.command()
def delete(
    run_id: Annotated[str, typer.Argument(help="a run or sweep id (see `acc runs`, `acc sweeps`)")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    store: StoreOption = None,
) -> None:
    """Delete a finished run, or a finished sweep with all its runs: records, jobs and
    checkpoint files. A queued or running run or sweep is refused (cancel it first), and so
    is one of a sweep's runs alone."""
    results_store = read_store(store, to_write=True)
    try:
        what, named, remove = _deletion(results_store, run_id)
        planned = remove(dry_run=True)
        if not yes:
            typer.confirm(f"delete {what}{named}: {_deleted_text(planned)}?", abort=True)
        deleted = remove()
    except StoreError as exc:  # RunInUse included: the command cannot be done as asked
        raise fail(str(exc)) from None
    console.print(f"deleted {what}: {_deleted_text(deleted)}")


def _deletion(store: Store, target: str):
    """("run ID" or "sweep ID", " (its name)" or "", the store's delete for it); StoreError
    if it is neither."""
    try:
        run = store.get_run(target)
    except StoreError:
        try:
            store.get_sweep(target)
        except StoreError:
            raise StoreError(f"no run or sweep {target!r} in the store at {store.root}") from None
        return f"sweep {target}", "", lambda dry_run=False: store.delete_sweep(target, dry_run)
    named = f" ({run['name']})" if run["name"] else ""
    return f"run {target}", named, lambda dry_run=False: store.delete_run(target, dry_run)


def _deleted_text(counts: dict[str, int]) -> str:
    runs = f"{counts['runs']} runs, " if "runs" in counts else ""
    return (
        f"{runs}{counts['branches']} branches, {counts['checkpoints']} checkpoints, "
        f"{counts['files']} files"
    )


def render_run(results: dict) -> None:
    if results.get("name"):
        console.print(f"[bold]{escape(results['name'])}[/bold]")
    if results.get("note"):
        console.print(escape(results["note"]))
    for table in metrics_table(results, console.width):
        console.print(table)
    if (lists := list_metrics_table(results)) is not None:
        console.print(lists)
    console.print(branches_table(results))
    if results["comparisons"]:
        console.print(comparison_table(results, console.width))
    for line in failures(results):
        console.print(f"[red]{line}[/red]")
    if results.get("error"):
        console.print(f"[red]run {results['status']}: {results['error']}[/red]")
