"""The results JSON of DESIGN.md, built from the store (so it is the same from CLI and API).

``comparisons`` is a list: each row names its metric and both sides (``a`` vs ``b``, paired
by seed), so recipes with any number of conditions report the same way. Rows are computed
from the stored per-seed metrics whenever results are read, then adjusted as a family (a run:
Holm over its rows; a sweep: Benjamini-Hochberg per metric and (a, b) pair, acc.decisions),
so a store written before the adjustment existed reads with adjusted verdicts too. ``deltas``
and ``correction`` re-read a run or sweep with other choices than those stored with it."""

from __future__ import annotations

from acc.best import best_conditions
from acc.decisions import (
    RUN_CORRECTION,
    SWEEP_CORRECTION,
    adjust,
    base_metric,
    check_correction,
    check_deltas,
    with_deltas,
)
from acc.stats import Hypothesis, compare, mean_std
from acc.store import Store
from acc.sweep import label


def build_results(
    store: Store, run_id: str, deltas: dict | None = None, correction: str | None = None
) -> dict:
    run = store.get_run(run_id)
    branches = store.branches(run_id)
    conditions: dict[str, dict] = {}
    for name, description in run["conditions"].items():
        conditions[name] = {"description": description, "runs": [], "mean": {}, "std": {}}
    for branch in branches:
        entry = conditions.setdefault(
            branch["condition"], {"description": "", "runs": [], "mean": {}, "std": {}}
        )
        entry["runs"].append(_run_entry(store, branch))
    for entry in conditions.values():
        entry["runs"].sort(key=lambda r: r["seed"])
        entry["mean"], entry["std"] = _summarise(
            [r["metrics"] for r in entry["runs"] if r["status"] == "completed" and r["metrics"]]
        )
    per_seed = {
        name: {
            r["seed"]: r["metrics"]
            for r in entry["runs"]
            if r["status"] == "completed" and r["metrics"]
        }
        for name, entry in conditions.items()
    }
    comparisons = _comparisons(run, per_seed, deltas, correction)
    seeds = {name: {**entry, "n": len(per_seed[name])} for name, entry in conditions.items()}
    return {
        "recipe": run["recipe"],
        "run_id": run_id,
        "name": run["name"],
        "note": run["note"],
        "status": run["status"],
        "error": run["error"],
        "config": run["config"],
        "conditions": conditions,
        "comparisons": comparisons,
        "best": best_conditions(seeds),  # metric -> the condition that earns a star
    }


def _comparisons(run: dict, per_seed: dict, deltas, correction) -> list[dict]:
    """The run's rows as one family: each stored hypothesis (with the delta stored with it,
    or the metric's default for runs from before deltas), adjusted with the run's correction."""
    hypotheses = [Hypothesis(**spec) for spec in run["hypotheses"]]
    hypotheses = with_deltas(hypotheses, check_deltas(deltas, hypotheses))
    stored = run["config"].get("correction", RUN_CORRECTION)
    rows = [compare(h, per_seed) for h in hypotheses]
    return adjust(rows, f"run {run['id']}", check_correction(correction, stored))


def _run_entry(store: Store, branch: dict) -> dict:
    checkpoint = None
    if branch["checkpoint_id"]:
        checkpoint = str(store.checkpoints.get(branch["checkpoint_id"]).path)
    entry = {
        "seed": branch["seed"],
        "steps": branch["steps_done"],
        "status": branch["status"],
        "metrics": branch["metrics"] or {},
        "checkpoint": checkpoint,
        "checkpoint_id": branch["checkpoint_id"],
        "health": branch["health"] or {},
    }
    if branch["error"]:
        entry["error"] = branch["error"]
    return entry


def _summarise(runs: list[dict]) -> tuple[dict, dict]:
    """Mean and sample std per metric; list-valued metrics (kl_per_dim) element by element."""
    mean, std = {}, {}
    keys = sorted({k for metrics in runs for k in metrics})
    for key in keys:
        values = [m[key] for m in runs if key in m]
        if all(isinstance(v, (int, float)) for v in values):
            mean[key], std[key] = mean_std([float(v) for v in values])
        elif all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            columns = [mean_std([float(v[i]) for v in values]) for i in range(len(values[0]))]
            mean[key] = [c[0] for c in columns]
            std[key] = None if len(values) < 2 else [c[1] for c in columns]
    return mean, std


def build_sweep_results(
    store: Store, sweep_id: str, deltas: dict | None = None, correction: str | None = None
) -> dict:
    """The sweep results JSON of DESIGN.md: per setting its standard runs, per cell its gated
    runs paired with them (mean, std, comparisons with ``a`` named as the recipe names it)."""
    sweep = store.get_sweep(sweep_id)
    spec, settings, cells = sweep["spec"], [], []
    correction = check_correction(correction, spec.get("correction", SWEEP_CORRECTION))
    params_of = {s["id"]: s["params"] for s in spec["settings"]}
    for run in store.sweep_runs(sweep_id):
        # unadjusted per run: every row is adjusted again with its heatmap's family below
        results = build_results(store, run["id"], deltas, "none")
        standard = results["conditions"].get("standard", {"runs": [], "mean": {}, "std": {}})
        settings.append(
            {
                "id": run["setting"],
                "params": params_of.get(run["setting"], {}),
                "run_id": run["id"],
                "status": results["status"],
                "standard": {k: standard[k] for k in ("runs", "mean", "std")},
                # the setting's ungated arms (with no gating axes: every condition of the
                # recipe) and their comparisons, for sweeps over other parameters (beta, lr)
                "conditions": {
                    name: {k: entry[k] for k in ("runs", "mean", "std")}
                    for name, entry in results["conditions"].items()
                    if "[" not in name
                },
                "comparisons": [c for c in results["comparisons"] if "[" not in c["a"]],
            }
        )
        cells += _cells(results, run["setting"], spec.get("cells") or [])
    _adjust_heatmaps(sweep_id, settings, cells, correction)
    return {
        "sweep_id": sweep_id,
        "recipe": sweep["recipe"],
        "status": sweep["status"],
        "error": sweep["error"],
        "axes": spec["axes"],
        "seeds": spec["base_params"]["seeds"],
        "base_params": spec["base_params"],
        "settings": settings,
        "cells": cells,
    }


def _adjust_heatmaps(sweep_id: str, settings: list, cells: list, correction: str) -> None:
    """One family per metric and (a, b) pair across every cell and setting (one heatmap):
    ``a`` and ``b`` without their cell labels, so "gated vs standard" and "gated vs shuffled"
    are separate families whatever the cells."""
    families: dict[tuple, list[dict]] = {}
    for row in [c for s in settings for c in s["comparisons"]] + [
        c for cell in cells for c in cell["comparisons"]
    ]:
        key = (row["metric"], base_metric(row["a"]), base_metric(row["b"]))
        families.setdefault(key, []).append(row)
    for (metric, a, b), rows in families.items():
        adjust(rows, f"sweep {sweep_id}: {metric}, {a} vs {b}", correction)


def _cells(results: dict, setting: str, cells: list[dict]) -> list[dict]:
    out = []
    for name, entry in results["conditions"].items():
        condition, _, cell_label = name.partition("[")
        if not cell_label:
            continue  # an ungated arm: the setting's standard
        cell_label = cell_label[:-1]
        params = next((c for c in cells if label(c) == cell_label), {})
        comparisons = [{**c, "a": condition} for c in results["comparisons"] if c["a"] == name]
        out.append(
            {
                "setting": setting,
                "params": params,
                "condition": condition,
                "name": name,  # the run's condition this cell is, e.g. gated[temperature=0.5]
                "run_id": results["run_id"],
                **{k: entry[k] for k in ("runs", "mean", "std")},
                "comparisons": comparisons,
            }
        )
    return out
