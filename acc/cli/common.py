"""The app, the options ``acc run`` and ``acc sweep`` share, and the helpers every command uses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

from acc.data import DataError
from acc.decisions import CORRECTIONS, DecisionError, check_correction, parse_deltas
from acc.executors import Executor, ExecutorError, default_executor, make_executor
from acc.files import write_atomic
from acc.progress import ProgressDisplay
from acc.registry import RegistryError
from acc.runner import DEFAULT_CHECKPOINT_EVERY, ParamsError, ResumeError
from acc.store import Store, StoreError, database_problem, default_store_dir
from acc.sweep_report import sweep_tables


class Commands(TyperGroup):
    """Every ``acc`` command: a store database that fails under it after opening (a damaged
    page met by a read, a lock held too long) is said in one line naming the file, as a
    damaged file met at opening is, never as a traceback."""

    def invoke(self, ctx: typer.Context):
        _opened.clear()
        console.width = output_width()  # COLUMNS as it is when this command runs
        try:
            return super().invoke(ctx)
        except sqlite3.DatabaseError as exc:
            root = _opened[-1] if _opened else default_store_dir()
            raise fail(database_problem(root / "acc.sqlite", exc)) from None


_opened: list[Path] = []  # the store this command opened (open_store, read_store)


app = typer.Typer(
    cls=Commands,
    add_completion=False,
    no_args_is_help=True,
    help="ACC: train autoencoders with and without competitive gradient gating "
    "and compare what they learn.",
)


def output_width() -> int | None:
    """The width tables are laid out for (acc.fit): $COLUMNS when set; else the terminal's
    (None: rich asks it); else, for piped output (a log file, CI), 160 columns."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if sys.stdout.isatty() else 160


console = Console(width=output_width())
# Notices about the store itself (leftovers removed, read-only) go to stderr: stdout is the
# command's answer, and `acc show --json > results.json` must stay JSON.
notices = Console(stderr=True)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", envvar="ACC_STORE", help="results store directory [default: ./acc-store]"
    ),
]
StepsOption = Annotated[
    int | None, typer.Option(help="training steps per branch; 0 evaluates the untrained models")
]
SeedsOption = Annotated[str | None, typer.Option(help="comma-separated seeds, e.g. 42,123,456")]
NumSeedsOption = Annotated[
    int | None,
    typer.Option(
        help="the first N seeds of ACC's fixed list (42, 123, 456, then 1000, 1001, ...); "
        "instead of --seeds"
    ),
]
EvalEveryOption = Annotated[
    int | None, typer.Option(help="steps between periodic evaluations (0 = off)")
]
OptimizerOption = Annotated[str | None, typer.Option(help="adam or sgd")]
LrOption = Annotated[float | None, typer.Option(help="learning rate")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="any other recipe parameter, KEY=VALUE (repeatable)"),
]
DeltaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--delta",
        help="smallest effect of interest, in the metric's units: METRIC=VALUE, METRIC a base "
        "name (weight_cosine_sim) or a full key (weight_cosine_sim[conv1]) (repeatable)",
        metavar="METRIC=VALUE",
    ),
]
CorrectionOption = Annotated[
    str | None,
    typer.Option(
        help=f"multiple-testing correction: {', '.join(CORRECTIONS)} "
        "[default: holm over a run's hypotheses, fdr_bh per heatmap of a sweep]"
    ),
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        envvar="ACC_DATA_DIR", help="directory of MNIST IDX files instead of the bundled MNIST"
    ),
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="write the results JSON here")]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        min=1, help="torch threads (per worker with --workers; default: CPU cores / workers)"
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        min=1,
        help="branches trained at the same time in local worker processes "
        "(Ray: as many as the cluster's CPUs / --threads)",
    ),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        help="inline, process, ray or stacked (branches that share a model train as one "
        "program) [default: inline, or process with --workers > 1]"
    ),
]
StackSizeOption = Annotated[
    int | None,
    typer.Option(
        help="--executor stacked: the most branches per stack [default: every branch that "
        "shares a program]"
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(help="HOST:PORT of an existing Ray cluster [default: start a local one]"),
]
GpusPerBranchOption = Annotated[
    float, typer.Option(help="Ray only: GPU share per branch (0.25: four branches per GPU)")
]
CheckpointEveryOption = Annotated[
    int | None,
    typer.Option(
        help=f"steps between resume points (0 = none) [default: {DEFAULT_CHECKPOINT_EVERY}]"
    ),
]


# What a researcher's input can get wrong: said in one line, exit code 2, nothing opened.
USER_ERRORS = (RegistryError, ParamsError, ResumeError, DataError, ExecutorError, ValueError)


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def open_store(path: Path | None) -> Store:
    """The store (created if new), cleaned of what killed checkpoint writes left behind."""
    try:
        store = Store(path)
    except StoreError as exc:
        raise fail(str(exc)) from None
    _opened.append(store.root)
    leftovers = store.checkpoints.clean_leftovers()
    if leftovers:
        notices.print(
            f"removed {len(leftovers)} leftover file(s) of interrupted checkpoint writes "
            f"under {store.root / 'checkpoints'}"
        )
    return store


def read_store(path: Path | None, to_write: bool = False) -> Store:
    """An existing store (reading commands never create one: a mistyped --store is an error),
    with runs whose process died (SIGKILL, out of memory) marked interrupted first, so that
    nothing is listed as running that never will finish. A store that cannot be written (a
    read-only mount, another user's) is opened read-only as it is, unless ``to_write``."""
    root = Path(path) if path is not None else default_store_dir()
    if not (root / "acc.sqlite").is_file():
        raise fail(
            f"no store at {root} (no acc.sqlite there); pass --store DIR or set ACC_STORE to "
            "the store's directory (`acc run` creates one)"
        )
    if not to_write and not writable(root):
        try:
            store = Store.read_only(root)
        except StoreError as exc:
            raise fail(str(exc)) from None
        _opened.append(root)
        notices.print(f"[dim]{root} is read-only: shown as it is[/dim]")
        return store
    store = open_store(path)
    store.close_orphaned_runs()
    return store


def writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (permissions, read-only mounts, full disks)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            return True
    except OSError:
        return False


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"seeds must be comma-separated integers, got {text!r}") from None


def parse_params(pairs: list[str]) -> dict:
    """``-p KEY=VALUE`` pairs (values JSON where they parse); a key given twice is refused,
    never silently the last one."""
    params: dict = {}
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes KEY=VALUE, got {pair!r}")
        if key in params:
            raise fail(f"-p {key} is given twice ({given[key]!r} and {pair!r}); give it once")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
        given[key] = pair
    return params


def collect_params(param, steps, seeds, eval_every, optimizer, lr, num_seeds=None) -> dict:
    """Recipe parameters given on the command line (and only those); one given both by its
    own option and by -p is refused."""
    params = parse_params(param or [])
    for key, value in {
        "num_seeds": num_seeds,  # the recipe's validation refuses it beside seeds
        "steps": steps,
        "seeds": parse_seeds(seeds),
        "eval_every": eval_every,
        "optimizer": optimizer,
        "lr": lr,
    }.items():
        if value is None:
            continue
        if key in params:
            option = "--" + key.replace("_", "-")
            raise fail(f"{key} is given twice (-p {key} and {option}); give it once")
        params[key] = value
    return params


def decision_options(delta: list[str] | None, correction: str | None) -> tuple[dict, str | None]:
    """``--delta`` and ``--correction`` parsed and checked (exit 2 with what is valid); the
    delta keys are checked against the recipe's hypotheses where the run is opened or read."""
    try:
        return parse_deltas(delta or []), check_correction(correction, None)
    except DecisionError as exc:
        raise fail(str(exc)) from None


def checkpoint_interval(checkpoint_every: int | None) -> int:
    return DEFAULT_CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every


def build_executor(
    name, workers, branches, threads, ray_address, gpus_per_branch, stack_size=None
) -> Executor:
    """The executor, with ``--workers`` clamped to the branches there are (and said so, once);
    fewer than 1 never gets here (the option's minimum refuses it, exit 2)."""
    if workers > branches and (name or default_executor(workers)) == "process":
        console.print(f"--workers {workers} is more than the {branches} branches; using {branches}")
        workers = branches
    if name == "inline" and workers > 1:
        raise ExecutorError("the inline executor trains one branch at a time; drop --workers")
    if (ray_address or gpus_per_branch) and (name or "") != "ray":
        raise ExecutorError("--ray-address and --gpus-per-branch need --executor ray")
    if stack_size is not None and name != "stacked":
        raise ExecutorError("--stack-size needs --executor stacked")
    if name == "stacked" and workers > 1:
        raise ExecutorError(
            "the stacked executor trains each stack in this process; drop --workers "
            "(--stack-size sets how many branches train together)"
        )
    executor = make_executor(name, workers, threads, ray_address, gpus_per_branch, stack_size)
    if name == "stacked":  # "N at a time": the largest stack there can be
        executor.workers = min(stack_size or branches, branches)
    return executor


def open_when_ready(pool: Executor, path: Path | None, open_target) -> tuple[Store, str]:
    """Open the store, then the run or sweep in it (``open_target(store)`` gives its id), only
    once the executor is ready: a Ray cluster that cannot be joined must leave no empty store
    behind. The executor is closed again if opening fails."""
    try:
        results_store = open_store(path)
        return results_store, open_target(results_store)
    except BaseException:
        pool.close()
        raise


def interrupt_on_signals() -> None:
    """Ctrl-C and `kill PID` end a run the same way: finished branches kept, run interrupted.

    SIGINT's handler is set explicitly because a shell that starts a job in the background
    (`nohup acc run ... &`) leaves SIGINT ignored, and Python then never raises KeyboardInterrupt.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def check_json_path(path: Path | None) -> None:
    """Refuse a --json path that could not be written before anything trains, not after
    (its folder is made now, and a probe file written and removed there)."""
    if path is None:
        return
    if path.is_dir():
        raise fail(f"--json {path} is a directory; give a file name, e.g. {path / 'results.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}."):
            pass
    except OSError as exc:
        raise fail(f"--json {path} cannot be written: {exc}") from None


def write_json(path: Path, results: dict) -> None:
    write_atomic(path, json.dumps(results, indent=2).encode())
    console.print(f"results JSON written to {path}")


def render_sweep(results: dict) -> None:
    for part in sweep_tables(results, console.width):
        console.print(part)


def train_and_report(store: Store, target_id: str, pool: Executor, execute, render, json_path,
                     resume_hint: str, total: int | None = None) -> None:  # fmt: skip
    """Execute a run or sweep with live bars, print its tables, write its JSON, and exit
    with its status (the executor is closed whatever happens)."""
    try:
        with ProgressDisplay(console, total=total) as display:
            results = execute(store, target_id, pool, on_event=display.handle)
    except StoreError as exc:  # the store could not take a write (a full disk)
        raise fail(str(exc), code=1) from None
    finally:
        pool.close()
    render(results)
    if json_path:
        write_json(json_path, results)
    exit_for(results["status"], resume_hint)


def exit_for(status: str, resume_hint: str) -> None:
    """Exit 130 (with how to resume) when interrupted, 1 when not completed, else 0."""
    if status == "interrupted":
        console.print(f"resume it with: {resume_hint}")
        raise typer.Exit(130)
    if status != "completed":
        raise typer.Exit(1)
