"""``acc power RUN_ID``: how much each of a run's hypotheses can detect, and what it would take.

An "inconclusive" verdict is only as informative as the design behind it: per hypothesis this
prints the smallest effect the run's seeds detect with 80% power (``mde80``, from the observed
spread of the paired differences) beside the smallest effect of interest (δ) and the seeds
that would detect δ (``seeds_needed``). Computed from the stored per-seed metrics.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from acc.cli.common import (
    CorrectionOption,
    DeltaOption,
    StoreOption,
    app,
    console,
    decision_options,
    fail,
    read_store,
)
from acc.decisions import DecisionError
from acc.report import power_rows, power_table
from acc.results import build_results
from acc.store import Store, StoreError


@app.command()
def power(
    run_id: Annotated[str, typer.Argument(help="a run id (see `acc runs`)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    store: StoreOption = None,
    delta: DeltaOption = None,
    correction: CorrectionOption = None,
) -> None:
    """Per hypothesis of a run: n, the mean and sd of the paired differences, δ, the effect
    detectable now (mde80) and the seeds that would detect δ with 80% power."""
    deltas, correction = decision_options(delta, correction)
    results_store = read_store(store)
    try:
        results = build_results(results_store, run_id, deltas, correction)
    except StoreError:
        raise fail(_unknown(results_store, run_id)) from None
    except DecisionError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "hypotheses": power_rows(results)}, indent=2))
    else:
        console.print(power_table(results))


def _unknown(store: Store, run_id: str) -> str:
    """What to say for an id that is no run: a sweep's id names its runs."""
    try:
        runs = [run["id"] for run in store.sweep_runs(store.get_sweep(run_id)["id"])]
    except StoreError:
        return f"no run {run_id!r} in the store at {store.root}"
    return f"{run_id} is a sweep; acc power takes one of its runs: {', '.join(runs)}"
