"""Rendering results for the terminal: the comparison table and the hypothesis verdicts."""

from __future__ import annotations

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from acc.eval_metric import split_key
from acc.fit import fit_columns, fits

VERDICT_STYLE = {
    "supported": "green",
    "contradicted": "red",
    "equivalent": "cyan",
    "inconclusive": "yellow",
}


def fmt(value: float | None, std: float | None = None, stacked: bool = False) -> str:
    """``0.2489 ± 0.009``; ``stacked``: the spread on a line of its own (narrow outputs)."""
    if value is None:
        return "–"
    text = f"{value:.4g}"
    if std is None:
        return text
    return f"{text}\n± {std:.2g}" if stacked else f"{text} ± {std:.2g}"


def metrics_table(results: dict, width: int | None = None) -> list[Table]:
    """One row per scalar metric, one column per condition: mean ± std over seeds; a star (and
    bold) where one condition is better by more than noise (``results["best"]``, acc.best).
    Laid out to fit ``width`` (acc.fit): spreads stacked under means, then the conditions
    split over several tables; names and numbers are never cut."""
    conditions = results["conditions"]
    keys = sorted(
        {
            k
            for e in conditions.values()
            for k, v in e["mean"].items()
            if isinstance(v, (int, float))
        },
        key=metric_order,
    )
    title = f"{results['recipe']}  ·  run {results['run_id']}  ·  {results['status']}"
    return fit_columns(
        lambda names, stacked: _metrics_rows(results, keys, names, stacked, title),
        list(conditions),
        width,
    )


def _metrics_rows(results: dict, keys: list, names, stacked: bool, title: str) -> Table:
    conditions = results["conditions"]
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    for name in names:
        seeds = sum(1 for r in conditions[name]["runs"] if r["status"] == "completed")
        header = f"{escape(name)}\n(n={seeds})" if stacked else f"{escape(name)} (n={seeds})"
        table.add_column(header, justify="right", overflow="fold")
    for key in keys:
        best = results.get("best", {}).get(key)  # the star's rule: acc.best
        cells = []
        for name in names:
            entry = conditions[name]
            cell = fmt(entry["mean"].get(key), entry["std"].get(key), stacked)
            cells.append(f"[bold]{cell} *[/bold]" if name == best else cell)
        table.add_row(escape(key), *cells)  # escape: "[conv1]" is not rich markup
    return table


def comparison_table(results: dict, width: int | None = None) -> Table | Group:
    """One row per hypothesis: the paired difference and its 95% interval, the p-value
    adjusted over the family, delta and the verdict; an inconclusive verdict says beneath it
    what the data still exclude and how many seeds would decide (acc.stats). Where the table
    is wider than ``width``, each hypothesis is a block of lines instead (nothing dropped)."""
    rows = results["comparisons"]
    title = f"Hypotheses (paired by seed; {family_text(rows)})"
    table = Table(title=title)
    table.add_column("hypothesis", ratio=3, overflow="fold")
    table.add_column("a − b, 95% CI", justify="right", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("p adj.", justify="right", no_wrap=True)
    table.add_column("δ", justify="right", no_wrap=True)
    table.add_column("verdict", ratio=2, min_width=12)
    for row in rows:
        table.add_row(
            f"{escape(row['metric'])}\n[dim]{escape(row['hypothesis'])}[/dim]",
            f"{fmt(row['mean_diff'])}\n[dim]{_ci_text(row)}",
            str(row["n"]),
            p_text(row.get("p_adjusted")),
            fmt(row.get("delta")),
            verdict_text(row),
        )
    return table if fits(table, width) else _hypothesis_blocks(title, rows)


def _ci_text(row: dict) -> str:
    ci = row["ci95"]
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "–"


def _hypothesis_blocks(title: str, rows: list[dict]) -> Group:
    """The hypotheses table for a narrow output: per hypothesis, its metric and direction,
    then its numbers labelled on one (wrapping) line, then what an inconclusive one needs."""
    lines = [f"[bold]{escape(title)}[/bold]"]
    for row in rows:
        style = VERDICT_STYLE.get(row["verdict"], "")
        lines.append(f"[bold]{escape(row['metric'])}[/bold]: {escape(row['hypothesis'])}")
        lines.append(
            f"  a − b {fmt(row['mean_diff'])}, 95% CI {escape(_ci_text(row))} · n {row['n']} · "
            f"p adj. {p_text(row.get('p_adjusted'))} · δ {fmt(row.get('delta'))} · "
            f"[{style}]{row['verdict']}[/{style}]"
        )
        if row.get("verdict_note"):
            lines.append(f"  [dim]{escape(row['verdict_note'])}[/dim]")
    return Group(*lines)


def family_text(rows: list[dict]) -> str:
    """How the rows' p-values were adjusted, said once for the table."""
    tested = max((row.get("family_size") or 0 for row in rows), default=0)
    method = rows[0].get("adjustment", "none") if rows else "none"
    if method == "none":
        return "p unadjusted; δ = smallest effect of interest"
    return f"p adjusted with {method} over {tested} tests; δ = smallest effect of interest"


def p_text(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def verdict_text(row: dict) -> str:
    style = VERDICT_STYLE.get(row["verdict"], "")
    text = f"[{style}]{row['verdict']}[/{style}]"
    if row.get("verdict_note"):
        text += f"\n[dim]{escape(row['verdict_note'])}[/dim]"
    return text


POWER_FIELDS = ("metric", "hypothesis", "n", "mean_diff", "sd_diff", "delta", "mde80")
POWER_FIELDS += ("seeds_needed", "p_adjusted", "verdict")


def power_rows(results: dict) -> list[dict]:
    """Per hypothesis what ``acc power`` reports: the smallest effect detectable now (80%
    power, 5%, two-sided paired t with the observed sd of d) and the seeds that would detect
    delta."""
    return [{k: row.get(k) for k in POWER_FIELDS} for row in results["comparisons"]]


def power_table(results: dict) -> Table:
    table = Table(
        title=f"Power of run {results['run_id']} (80% power at 5%, two-sided paired t, "
        "sd of the observed differences)"
    )
    table.add_column("hypothesis", ratio=1, overflow="fold")
    for column in ("n", "mean diff", "sd of d", "δ", "mde80 now", "seeds for δ"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for row in power_rows(results):
        style = VERDICT_STYLE.get(row["verdict"], "")
        seeds = row["seeds_needed"]
        table.add_row(
            f"{escape(row['metric'])}\n[dim]{escape(row['hypothesis'])}[/dim]",
            str(row["n"]),
            short(row["mean_diff"]),
            short(row["sd_diff"]),
            short(row["delta"]),
            short(row["mde80"]),
            "–" if seeds is None else f"{seeds:,}",
            f"[{style}]{row['verdict']}[/{style}]",
        )
    return table


def short(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


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
        table.add_column(column, overflow="fold")  # wrapped where narrow, never cut
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
        table.add_column(
            column, justify="right" if column in ("seed", "steps") else "left", overflow="fold"
        )
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
