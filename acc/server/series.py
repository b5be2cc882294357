"""Time series of a run for the charts: losses and periodic metrics per condition and seed.

Column-oriented (``{"step": [...], "value": [...]}``) because that is what plotly traces take;
list-valued metrics (``kl_per_dim``) are left out of the curves (they are in the results).
"""

from __future__ import annotations

from acc.store import Store


def run_series(store: Store, run_id: str) -> dict:
    run = store.get_run(run_id)
    branches = [_branch_series(store, b) for b in store.branches(run_id)]
    return {
        "run_id": run_id,
        "status": run["status"],
        "steps": run["config"].get("steps"),
        "seeds": run["config"].get("seeds"),
        "conditions": list(run["conditions"]),
        "branches": branches,
    }


def _branch_series(store: Store, branch: dict) -> dict:
    losses: dict[str, dict[str, list]] = {}
    for row in store.losses(branch["id"]):
        series = losses.setdefault(row["task"], {"step": [], "value": []})
        series["step"].append(row["step"])
        series["value"].append(row["value"])
    evals = store.evals(branch["id"])
    keys = sorted({k for e in evals for k, v in e["metrics"].items() if _is_number(v)})
    metrics = {
        k: [e["metrics"].get(k) if _is_number(e["metrics"].get(k)) else None for e in evals]
        for k in keys
    }
    return {
        "id": branch["id"],
        "condition": branch["condition"],
        "seed": branch["seed"],
        "status": branch["status"],
        "steps_done": branch["steps_done"],
        "error": branch["error"],
        "health": branch["health"] or {},
        "losses": losses,
        "evals": {"step": [e["step"] for e in evals], "metrics": metrics},
    }


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
