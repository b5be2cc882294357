"""``acc sweep`` and ``acc sweeps``: sensitivity sweeps over a recipe's parameters."""

from __future__ import annotations

from typing import Annotated

import torch
import typer
from rich.table import Table

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
from acc.runner import (
    NothingToResume,
    check_resumable_sweep,
    execute_sweep,
    open_sweep,
    prepare_sweep,
)
from acc.store import Store, StoreError
from acc.sweep import parse_axes

AxisOption = Annotated[
    list[str] | None,
    typer.Option(help="NAME=V1,V2,... (repeatable)", metavar="NAME=V1,V2"),
]


@app.command()
def sweep(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe name (see `acc list`); omit with --resume")
    ] = None,
    grid: AxisOption = None,
    zip_axes: Annotated[
        list[str] | None,
        typer.Option(
            "--zip", help="NAME=V1,V2,...: zipped axes advance together", metavar="NAME=V1,V2"
        ),
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
    yes: Annotated[
        bool, typer.Option("--yes", help="start even a sweep of >1,000 branches")
    ] = False,
    resume: Annotated[
        str | None, typer.Option(help="finish an interrupted sweep", metavar="SWEEP_ID")
    ] = None,
    delta: DeltaOption = None,
    correction: CorrectionOption = None,
) -> None:
    """Sweep a recipe's parameters: --grid axes multiply, --zip axes advance together. Gating
    parameters make cells of the gated condition; others make settings with their own
    standard condition, trained once per seed and setting."""
    if threads:
        torch.set_num_threads(threads)
    interrupt_on_signals()
    deltas, correction = decision_options(delta, correction)
    if resume and (deltas or correction):
        raise fail(
            "a resumed sweep keeps the --delta and --correction it started with; read it with "
            f"others (nothing retrains): acc show {resume} --delta ... --correction ..."
        )
    check_json_path(json_path)
    results_store = read_store(store, to_write=True) if resume else None
    try:
        if resume:
            sweep_id = resume
            branches = _left_to_train(results_store, resume)
        else:
            if recipe is None:
                raise typer.BadParameter("name a recipe (see `acc list`), or --resume SWEEP_ID")
            plan = prepare_sweep(
                recipe,
                collect_params(param, steps, seeds, eval_every, optimizer, lr, num_seeds),
                parse_axes(grid or [], "--grid"),
                parse_axes(zip_axes or [], "--zip"),
                "cuda" if gpus_per_branch else device,
                data_dir,
                checkpoint_interval(checkpoint_every),
                remote_device=bool(gpus_per_branch),
                max_branches=None if yes else 1000,
                deltas=deltas,
                correction=correction,
            )
            branches = plan.branches
        pool = build_executor(
            executor, workers, branches, threads, ray_address, gpus_per_branch, stack_size
        )
        if not resume:
            results_store, sweep_id = open_when_ready(
                pool, store, lambda opened: open_sweep(opened, plan)
            )
    except NothingToResume as done:
        console.print(str(done))
        return
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    console.print(
        f"sweep [bold]{sweep_id}[/bold] · {branches} branches · {pool.name} executor, "
        f"{pool.workers} at a time · store {results_store.root.resolve()}"
    )
    train_and_report(
        results_store,
        sweep_id,
        pool,
        execute_sweep,
        render_sweep,
        json_path,
        f"acc sweep --resume {sweep_id}",
        total=branches,
    )


def _left_to_train(store: Store, sweep_id: str) -> int:
    check_resumable_sweep(store, sweep_id)
    left = total = 0
    for run in store.sweep_runs(sweep_id):
        branches = store.branches(run["id"])
        total += len(branches)
        left += sum(1 for b in branches if b["status"] != "completed")
    planned = store.get_sweep(sweep_id)["spec"]["branches"]
    left += planned - total  # never planned: the sweep stopped before their run started
    console.print(f"resuming {sweep_id}: {left} of {planned} branches to finish")
    return left


@app.command()
def sweeps(
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
) -> None:
    """List past sweeps in the store (`acc show SWEEP_ID` prints one's tables)."""
    table = Table("sweep id", "recipe", "status")
    try:
        rows = read_store(store).list_sweeps(limit)
    except StoreError as exc:
        raise fail(str(exc)) from None
    for row in rows:
        table.add_row(row["id"], row["recipe"], row["status"])
    console.print(table)
