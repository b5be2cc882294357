"""The results JSON of DESIGN.md, built from the store (so it is the same from CLI and API).

``comparisons`` is a list: each row names its metric and both sides (``a`` vs ``b``, paired
by seed), so recipes with any number of conditions report the same way."""

from __future__ import annotations

from acc.best import best_conditions
from acc.stats import Hypothesis, compare, mean_std
from acc.store import Store
from acc.sweep import label


def build_results(store: Store, run_id: str) -> dict:
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
    comparisons = [compare(Hypothesis(**spec), per_seed) for spec in run["hypotheses"]]
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


def build_sweep_results(store: Store, sweep_id: str) -> dict:
    """The sweep results JSON of DESIGN.md: per setting its standard runs, per cell its gated
    runs paired with them (mean, std, comparisons with ``a`` named as the recipe names it)."""
    sweep = store.get_sweep(sweep_id)
    spec, settings, cells = sweep["spec"], [], []
    params_of = {s["id"]: s["params"] for s in spec["settings"]}
    for run in store.sweep_runs(sweep_id):
        results = build_results(store, run["id"])
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
                "run_id": results["run_id"],
                **{k: entry[k] for k in ("runs", "mean", "std")},
                "comparisons": comparisons,
            }
        )
    return out
