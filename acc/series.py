"""Time series of a run for the charts: losses and periodic metrics per condition and seed.

Column-oriented (``{"step": [...], "value": [...], "time": [...]}``: ``time`` is when each point
was recorded, seconds since the epoch, for the charts' time axes) because that is what plotly
traces take; list-valued metrics (``kl_per_dim``) are left out of the curves (they are in the results).
"""

from __future__ import annotations

from acc.store import Store


def run_series(store: Store, run_id: str, final_point: bool = True) -> dict:
    """Every branch's curves; ``final_point`` adds a completed branch's final metrics as its
    curves' last point (for the charts; exports keep the evaluations as recorded)."""
    run = store.get_run(run_id)
    branches = [_branch_series(store, b, final_point) for b in store.branches(run_id)]
    return {
        "run_id": run_id,
        "status": run["status"],
        "steps": run["config"].get("steps"),
        "seeds": run["config"].get("seeds"),
        "conditions": list(run["conditions"]),
        "branches": branches,
    }


def _branch_series(store: Store, branch: dict, final_point: bool) -> dict:
    losses: dict[str, dict[str, list]] = {}
    for row in store.losses(branch["id"], with_time=True):
        series = losses.setdefault(row["task"], {"step": [], "value": [], "time": []})
        series["step"].append(row["step"])
        series["value"].append(row["value"])
        series["time"].append(row["time"])
    evals = store.evals(branch["id"], with_time=True)
    if final_point:
        evals = _with_final_point(evals, branch)
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
        "started_at": branch["started_at"],
        "losses": losses,
        "evals": {
            "step": [e["step"] for e in evals],
            "time": [e.get("time") for e in evals],
            "metrics": metrics,
        },
    }


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _with_final_point(evals: list[dict], branch: dict) -> list[dict]:
    """A completed branch's final metrics as the curves' last point, when the periodic
    evaluations stopped short of the final step (steps not a multiple of eval_every): the
    final evaluation measures the same keys on the same test split. Only the periodic keys
    are extended; final-only metrics (disentanglement) are not curves."""
    final, steps = branch.get("metrics") or {}, branch["steps_done"]
    if not evals or not final or branch["status"] != "completed" or evals[-1]["step"] >= steps:
        return evals
    periodic = {k for e in evals for k in e["metrics"]}
    final_point = {k: v for k, v in final.items() if k in periodic}
    return [*evals, {"step": steps, "time": branch["finished_at"], "metrics": final_point}]
