"""Rendering results for the terminal: the comparison table and the hypothesis verdicts."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from acc.eval_metric import split_key

VERDICT_STYLE = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.4g}"
    return text if std is None else f"{text} ± {std:.2g}"


def metrics_table(results: dict) -> Table:
    """One row per scalar metric, one column per condition: mean ± std over seeds; a star (and
    bold) where one condition is better by more than noise (``results["best"]``, acc.best)."""
    conditions = results["conditions"]
    table = Table(title=f"{results['recipe']}  ·  run {results['run_id']}  ·  {results['status']}")
    table.add_column("metric", no_wrap=True)
    for name, entry in conditions.items():
        seeds = sum(1 for r in entry["runs"] if r["status"] == "completed")
        table.add_column(f"{name} (n={seeds})", justify="right")
    keys = sorted(
        {
            k
            for e in conditions.values()
            for k, v in e["mean"].items()
            if isinstance(v, (int, float))
        },
        key=metric_order,
    )
    for key in keys:
        means = {c: e["mean"].get(key) for c, e in conditions.items()}
        best = results.get("best", {}).get(key)  # the star's rule: acc.best
        cells = []
        for name, entry in conditions.items():
            cell = fmt(means[name], entry["std"].get(key))
            cells.append(f"[bold]{cell} *[/bold]" if name == best else cell)
        table.add_row(escape(key), *cells)  # escape: "[conv1]" is not rich markup
    return table


def comparison_table(results: dict) -> Table:
    table = Table(title="Hypotheses (paired by seed, 95% t interval of the mean difference)")
    table.add_column("metric", no_wrap=True)
    table.add_column("hypothesis")
    table.add_column("mean diff", justify="right", no_wrap=True)
    table.add_column("95% CI", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("verdict", no_wrap=True)
    for row in results["comparisons"]:
        ci = row["ci95"]
        ci_text = f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "– (needs ≥ 2 seeds)"
        style = VERDICT_STYLE.get(row["verdict"], "")
        table.add_row(
            escape(row["metric"]),
            escape(row["hypothesis"]),
            fmt(row["mean_diff"]),
            ci_text,
            str(row["n"]),
            f"[{style}]{row['verdict']}[/{style}]",
        )
    return table


def list_metrics_table(results: dict) -> Table | None:
    """List-valued metrics (e.g. kl_per_dim), compactly: per condition, the range and the
    seed-mean of each element sorted from largest to smallest. None when there are none."""
    rows = [
        (key, name, values)
        for name, entry in results["conditions"].items()
        for key, values in sorted(entry["mean"].items())
        if isinstance(values, list) and values
    ]
    if not rows:
        return None
    table = Table(title="List-valued metrics (mean over seeds, per element)")
    for column in ("metric", "condition", "range", "values, largest first"):
        table.add_column(column)
    for key, name, values in rows:
        ordered = sorted((v for v in values if v is not None), reverse=True)
        span = f"{ordered[-1]:.3g} – {ordered[0]:.3g}" if ordered else "–"
        table.add_row(escape(key), name, span, " ".join(f"{v:.2g}" for v in ordered))
    return table


HEALTH_STYLE = {"healthy": "green", "suspicious": "yellow", "diverged": "red"}


def branches_table(results: dict) -> Table:
    """One row per branch: its status, steps, and each training task's loss health."""
    table = Table(title="Branches")
    for column in ("condition", "seed", "status", "steps", "loss health"):
        table.add_column(column, justify="right" if column in ("seed", "steps") else "left")
    for name, entry in results["conditions"].items():
        for r in entry["runs"]:
            health = " ".join(
                f"{task} [{HEALTH_STYLE.get(h, '')}]{h}[/{HEALTH_STYLE.get(h, '')}]"
                for task, h in r.get("health", {}).items()
            )
            table.add_row(name, str(r["seed"]), r["status"], str(r["steps"]), health or "–")
    return table


def failures(results: dict) -> list[str]:
    return [
        f"{name} seed {r['seed']}: {r['status']}: {r.get('error', '')}"
        for name, entry in results["conditions"].items()
        for r in entry["runs"]
        if r["status"] != "completed"
    ]


def metric_order(key: str) -> tuple[int, str]:
    metric, layer = split_key(key)
    order = list(type(metric)).index(metric) if metric is not None else 99
    return order, layer or ""
