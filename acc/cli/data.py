"""``acc data factors``: the measured Morpho-MNIST factors of a split, as CSV.

The measurements are cached in ``<store>/factors/`` (keyed by the images' bytes), so the level-3
recipe and this command measure each split once between them.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from acc.cli.common import DataDirOption, StoreOption, app, console, fail
from acc.data import DataError, load_mnist
from acc.factors import FACTORS, dataset_factors
from acc.store import default_store_dir

data_app = typer.Typer(no_args_is_help=True, help="The data: measured MNIST factors.")
app.add_typer(data_app, name="data")

SPLITS = ("test", "train", "all")


@data_app.command("factors")
def factors(
    csv_path: Annotated[Path, typer.Option("--csv", help="write the factors to this CSV file")],
    split: Annotated[str, typer.Option(help="test, train or all (train rows, then test)")] = "test",
    store: StoreOption = None,
    data_dir: DataDirOption = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="processes measuring [default: CPU cores]")
    ] = None,
) -> None:
    """Measure area, length, thickness, slant, width and height (Morpho-MNIST) of every image
    of a split: one CSV row per image, ``index`` = its position in the split."""
    if split not in SPLITS:
        raise fail(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    try:
        dataset = load_mnist("28", data_dir=data_dir)
    except DataError as exc:
        raise fail(str(exc)) from None
    cache_dir = (store or default_store_dir()) / "factors"
    splits = ("train", "test") if split == "all" else (split,)
    started = time.perf_counter()
    try:
        measured = {name: _measure_split(dataset, name, cache_dir, workers) for name in splits}
        rows = _write_csv(csv_path, measured, with_split=split == "all")
    except OSError as exc:
        raise fail(f"cannot write the factors: {exc}") from None
    console.print(f"{rows} rows written to {csv_path} ({time.perf_counter() - started:.1f} s)")


def _measure_split(dataset, split: str, cache_dir: Path, workers: int | None) -> dict:
    """One split's factors (from the cache when it has them), with a bar while measuring."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(f"measuring {split}", total=len(getattr(dataset, split)))
        return dataset_factors(
            dataset,
            split,
            cache_dir,
            log=lambda message: console.print(f"[yellow]{message}[/yellow]"),
            workers=workers,
            progress=lambda n: bar.advance(task, n),
        )


def _write_csv(path: Path, measured: dict[str, dict], with_split: bool) -> int:
    """``[split,]index,area,...,height``, one row per image, floats at full precision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow((["split"] if with_split else []) + ["index", *FACTORS])
        for split, values in measured.items():
            columns = [values[name].tolist() for name in FACTORS]
            for index, row in enumerate(zip(*columns)):
                writer.writerow(([split] if with_split else []) + [index, *row])
                rows += 1
    return rows
