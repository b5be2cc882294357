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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from acc.data import DataError
from acc.recipes import recipe_registry
from acc.registry import RegistryError
from acc.report import comparison_table, failures, list_metrics_table, metrics_table
from acc.results import build_results
from acc.runner import ParamsError, create_run, execute_run
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
    recipe: Annotated[str, typer.Argument(help="recipe name (see `acc list`)")],
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
            min=1, help="CPU threads for torch; 1 is fastest for small models on a busy machine"
        ),
    ] = None,
) -> None:
    """Run a recipe with live progress, then print the comparison table."""
    if threads:
        torch.set_num_threads(threads)
    _interrupt_on_signals()
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
    results_store = _open_store(store)
    try:
        run_id = create_run(results_store, recipe, params, device, data_dir)
    except (RegistryError, ParamsError, DataError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"run [bold]{run_id}[/bold] · store {results_store.root.resolve()}")
    with _ProgressDisplay() as display:
        results = execute_run(results_store, run_id, on_event=display.handle)
    _render(results)
    if json_path:
        _write_json(json_path, results)
        console.print(f"results JSON written to {json_path}")
    if results["status"] == "interrupted":
        raise typer.Exit(130)
    if results["status"] != "completed":
        raise typer.Exit(1)


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
    if results["comparison"]:
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


class _ProgressDisplay:
    """A progress bar per branch, fed by the recipe context's events."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=console,
        )
        self.bars: dict[tuple[str, int], int] = {}

    def __enter__(self) -> _ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def handle(self, event: dict) -> None:
        kind = event["type"]
        key = (event.get("condition"), event.get("seed"))
        if kind == "train":
            if key not in self.bars:
                self.bars[key] = self.progress.add_task(
                    f"{key[0]:>10} seed {key[1]:<5}", total=max(event["to_step"], 1), status=""
                )
            self.progress.update(self.bars[key], total=max(event["to_step"], 1))
        elif kind == "step" and key in self.bars:
            loss = " ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
            status = f"{loss} · {event['steps_per_second']:.0f} it/s"
            self.progress.update(self.bars[key], completed=event["step"], status=status)
            self._plain_line(key, event["step"], status)
        elif kind == "branch" and event["state"] != "running" and key in self.bars:
            bar = self.bars[key]
            total = self.progress.tasks[bar].total
            done = total if event["state"] == "completed" else event.get("steps", 0)
            self.progress.update(bar, completed=done, status=event["state"])
        elif kind == "branch" and event["state"] != "running":
            console.print(f"{key[0]} seed {key[1]}: {event['state']} {event.get('error') or ''}")
        elif kind == "log" and "Traceback" in event["message"]:
            console.print(f"[dim]{event['message']}[/dim]")

    def _plain_line(self, key: tuple, step: int, status: str) -> None:
        """Without a terminal (a log file, CI) live bars do not render: log every tenth."""
        if console.is_terminal:
            return
        total = self.progress.tasks[self.bars[key]].total or 1
        if step == total or step % max(int(total) // 10, 1) < 50:
            console.print(f"{key[0]} seed {key[1]}: step {step}/{int(total)} · {status}")


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
    worker_threads: Annotated[
        int | None,
        typer.Option(min=1, help="torch threads per job worker [default: CPU cores - 1]"),
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
        )
        sock = bind(host, port)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"ACC dashboard at [bold]{url_of(sock)}/[/bold] · store {root.resolve()}", highlight=False
    )
    serve_forever(application, sock)
