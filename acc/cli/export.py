"""``acc export``: a run's numbers as JSON, tidy CSV or TensorBoard logs (``acc.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acc.cli.common import StoreOption, app, console, fail, read_store
from acc.export import ExportFormat, export_run
from acc.store import StoreError


@app.command("export")
def export(
    run_id: Annotated[str, typer.Argument(help="a run id (see `acc runs`)")],
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="json (one file), csv (tidy tables) or tensorboard"),
    ] = ExportFormat.json,
    out: Annotated[
        Path,
        typer.Option(
            help="folder to write into (made if missing; files already there are kept, "
            "only the export's own are replaced)"
        ),
    ] = Path("exports"),
    store: StoreOption = None,
) -> None:
    """Export a run (finished or not) for other tools: OUT/RUN_ID.json, OUT/RUN_ID-csv/
    (final_metrics.csv, losses.csv, evals.csv) or OUT/RUN_ID-tensorboard/."""
    results_store = read_store(store)
    try:
        path = export_run(results_store, run_id, fmt, out)
    except StoreError:
        raise fail(f"no run {run_id!r} in the store at {results_store.root}") from None
    except (FileExistsError, NotADirectoryError) as exc:  # --out (or a part of it) is a file
        raise fail(f"cannot write the export to {out}: {exc}; give a folder") from None
    except (OSError, RuntimeError) as exc:  # the system refused (full disk, permissions, ...)
        raise fail(f"cannot write the export to {out}: {exc}", code=1) from None
    console.print(f"{fmt.value} export of {run_id} written to {path}")
    if fmt is ExportFormat.tensorboard:
        console.print(f"open it with: tensorboard --logdir {path}")
