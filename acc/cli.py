"""The ``acc`` command: a thin layer that parses, calls the runner or the store, and renders."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from acc.data import DataError
from acc.executors import ExecutorError, default_executor, make_executor
from acc.progress import ProgressDisplay
from acc.recipes import recipe_registry
from acc.registry import RegistryError
from acc.report import (
    branches_table,
    comparison_table,
    failures,
    list_metrics_table,
    metrics_table,
)
from acc.results import build_results
from acc.runner import (
    DEFAULT_CHECKPOINT_EVERY,
    NothingToResume,
    ParamsError,
    ResumeError,
    check_resumable,
    create_run,
    execute_run,
    split_config,
    validate_params,
)
from acc.store import Store, StoreError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="ACC: train autoencoders with and without competitive gradient gating "
    "and compare what they learn.",
)
# Piped output (a log file, CI) gets wide tables instead of 80 columns of truncated names.
console = Console() if sys.stdout.isatty() else Console(width=160)
StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", envvar="ACC_STORE", help="results store directory [default: ./acc-store]"
    ),
]

RayAddressOption = Annotated[
    str | None,
    typer.Option(help="HOST:PORT of an existing Ray cluster [default: start a local one]"),
]
GpusPerBranchOption = Annotated[
    float, typer.Option(help="Ray only: GPU share per branch (0.25: four branches per GPU)")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _open_store(path: Path | None) -> Store:
    try:
        return Store(path)
    except StoreError as exc:
        raise _fail(str(exc)) from None


def _read_store(path: Path | None) -> Store:
    """The store, with runs whose process died (SIGKILL, out of memory) marked interrupted
    first, so that nothing is listed as running that never will finish."""
    store = _open_store(path)
    store.close_orphaned_runs()
    return store


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


def _parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"seeds must be comma-separated integers, got {text!r}") from None


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@app.command()
def run(
    recipe: Annotated[
        str | None, typer.Argument(help="recipe name (see `acc list`); omit with --resume")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="training steps per branch; 0 evaluates the untrained models")
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="comma-separated seeds, e.g. 42,123,456")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="steps between periodic evaluations (0 = off)")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam or sgd")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="any other recipe parameter, KEY=VALUE (repeatable)"),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    store: StoreOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="ACC_DATA_DIR", help="directory of MNIST IDX files instead of the bundled MNIST"
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the results JSON here")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="torch threads (per worker with --workers; default: CPU cores / workers)",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="branches trained at the same time in local worker processes "
            "(Ray: as many as the cluster's CPUs / --threads)"
        ),
    ] = 1,
    executor: Annotated[
        str | None,
        typer.Option(
            help="inline, process or ray [default: inline, or process with --workers > 1]"
        ),
    ] = None,
    ray_address: RayAddressOption = None,
    gpus_per_branch: GpusPerBranchOption = 0.0,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help=f"steps between resume points (0 = none) [default: {DEFAULT_CHECKPOINT_EVERY}]"
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="finish an interrupted run: RUN_ID (see `acc runs`)", metavar="RUN_ID"),
    ] = None,
) -> None:
    """Run a recipe (or resume a run) with live progress, then print the comparison table."""
    if threads:
        torch.set_num_threads(threads)
    _interrupt_on_signals()
    params = _collect_params(param, steps, seeds, eval_every, optimizer, lr)
    results_store = _read_store(store) if resume else _open_store(store)
    try:
        if resume:
            run_id, branches = _prepare_resume(results_store, resume, recipe, params)
        else:
            if recipe is None:
                raise typer.BadParameter("name a recipe (see `acc list`), or --resume RUN_ID")
            branches = _count_branches(recipe, params)
        pool = _make_executor(executor, workers, branches, threads, ray_address, gpus_per_branch)
        if not resume:
            run_id = create_run(
                results_store,
                recipe,
                params,
                "cuda" if gpus_per_branch else device,
                data_dir,
                checkpoint_every=DEFAULT_CHECKPOINT_EVERY
                if checkpoint_every is None
                else checkpoint_every,
                remote_device=bool(gpus_per_branch),
            )
    except NothingToResume as done:
        console.print(str(done))
        return
    except (RegistryError, ParamsError, ResumeError, DataError, ExecutorError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"run [bold]{run_id}[/bold] · {pool.name} executor, {pool.workers} at a time · "
        f"store {results_store.root.resolve()}"
    )
    try:
        with ProgressDisplay(console) as display:
            results = execute_run(results_store, run_id, pool, on_event=display.handle)
    finally:
        pool.close()
    _render(results)
    if json_path:
        _write_json(json_path, results)
        console.print(f"results JSON written to {json_path}")
    if results["status"] == "interrupted":
        console.print(f"resume it with: acc run --resume {run_id}")
        raise typer.Exit(130)
    if results["status"] != "completed":
        raise typer.Exit(1)


def _collect_params(param, steps, seeds, eval_every, optimizer, lr) -> dict:
    """Recipe parameters given on the command line (and only those)."""
    params = _parse_params(param or [])
    for key, value in {
        "steps": steps,
        "seeds": _parse_seeds(seeds),
        "eval_every": eval_every,
        "optimizer": optimizer,
        "lr": lr,
    }.items():
        if value is not None:
            params[key] = value
    return params


def _count_branches(recipe_name: str, params: dict) -> int:
    recipe = recipe_registry().get(recipe_name)
    p = validate_params(recipe, params)
    return len(p.seeds) * len(recipe().conditions(p))


def _prepare_resume(store: Store, run_id: str, recipe: str | None, params: dict):
    run = check_resumable(store, run_id, params)
    if recipe is not None and recipe != run["recipe"]:
        raise ResumeError(f"run {run_id} is a {run['recipe']} run, not {recipe}")
    left = sum(1 for b in store.branches(run_id) if b["status"] != "completed")
    planned = _count_branches(run["recipe"], split_config(run["config"])[0])
    left += planned - len(store.branches(run_id))
    console.print(f"resuming {run_id}: {left} of {planned} branches to finish")
    return run_id, left


def _make_executor(name, workers, branches, threads, ray_address, gpus_per_branch):
    """The executor, with ``--workers`` clamped to what can run (and said so, once)."""
    if workers < 1:
        console.print("--workers must be at least 1; using 1")
        workers = 1
    elif workers > branches and (name or default_executor(workers)) == "process":
        console.print(f"--workers {workers} is more than the {branches} branches; using {branches}")
        workers = branches
    if name == "inline" and workers > 1:
        raise ExecutorError("the inline executor trains one branch at a time; drop --workers")
    if (ray_address or gpus_per_branch) and (name or "") != "ray":
        raise ExecutorError("--ray-address and --gpus-per-branch need --executor ray")
    return make_executor(name, workers, threads, ray_address, gpus_per_branch)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="a run id (see `acc runs`)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the results JSON")] = False,
    store: StoreOption = None,
) -> None:
    """Print a past run's comparison table (or its results JSON)."""
    try:
        results = build_results(_read_store(store), run_id)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        _render(results)


@app.command()
def runs(
    store: StoreOption = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 20,
) -> None:
    """List past runs in the store."""
    table = Table("run id", "recipe", "status")
    for row in _read_store(store).list_runs(limit):
        table.add_row(row["id"], row["recipe"], row["status"])
    console.print(table)


def _interrupt_on_signals() -> None:
    """Ctrl-C and `kill PID` end a run the same way: finished branches kept, run interrupted.

    SIGINT's handler is set explicitly because a shell that starts a job in the background
    (`nohup acc run ... &`) leaves SIGINT ignored, and Python then never raises KeyboardInterrupt.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _render(results: dict) -> None:
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


def _write_json(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(results, out, indent=2)
    os.replace(tmp, path)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on (0.0.0.0 exposes it to the network: only on a trusted one)"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0 = any free port)")] = 8000,
    store: StoreOption = None,
    max_jobs: Annotated[int, typer.Option(min=1, help="jobs trained at the same time")] = 1,
    workers: Annotated[
        int, typer.Option(min=1, help="branches of a job trained at the same time")
    ] = 1,
    executor: Annotated[str, typer.Option(help="process or ray")] = "process",
    ray_address: RayAddressOption = None,
    gpus_per_branch: GpusPerBranchOption = 0.0,
    worker_threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="torch threads per branch worker [default: (CPU cores - 1) / workers]"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda, for jobs")] = "auto",
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="ACC_DATA_DIR", help="MNIST IDX files instead of the bundled MNIST"),
    ] = None,
) -> None:
    """Start the dashboard: run recipes, watch them live, compare conditions."""
    from acc.server import create_app
    from acc.server.serving import bind, serve_forever, url_of

    root = _open_store(store).root
    try:
        application = create_app(
            root,
            max_concurrent=max_jobs,
            worker_threads=worker_threads,
            device=device,
            data_dir=str(data_dir) if data_dir else None,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            gpus_per_branch=gpus_per_branch,
        )
        sock = bind(host, port)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"ACC dashboard at [bold]{url_of(sock)}/[/bold] · store {root.resolve()}", highlight=False
    )
    serve_forever(application, sock)
