"""A sweep's results for the terminal: per hypothesis and setting, a grid of cells (first
gating axis down, the others across) with the mean paired difference, its 95% interval and a
verdict mark; the cell that best serves each hypothesis; and where the gate's mask collapses.
Marks are the adjusted verdicts: each heatmap (a metric and an (a, b) pair across every cell
and setting) is one family (acc.decisions)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from acc.fit import fit_columns
from acc.report import fmt, metric_order

MARKS = {
    "supported": "[green]✓[/green]",
    "contradicted": "[red]✗[/red]",
    "equivalent": "[cyan]=[/cyan]",
    "inconclusive": "·",
}


def sweep_tables(results: dict, width: int | None = None) -> list:
    """Everything ``acc sweep`` / ``acc show SWEEP_ID`` prints, in order; tables laid out to
    fit ``width`` (acc.fit: cells stacked, then columns split), never cut."""
    cells = results["cells"]
    out = [
        f"[bold]sweep {results['sweep_id']}[/bold] · {results['recipe']} · {results['status']} · "
        f"{len(results['settings'])} setting(s) x {len(cells)} cell-arm(s) x "
        f"{len(results['seeds'])} seed(s)"
    ]
    if not cells:
        return [*out, legend(results), *settings_table(results, width)]
    out.append(legend(results))
    pairs = _pairs(cells)
    several = len({b for _, b in pairs}) > 1  # with a control: name the pair in each title
    for metric, b in pairs:
        tested = [c for c in cells if _comparison(c, metric, b)]  # the cells' gated arms
        title = f"{metric} (gated − {b})" if several else metric
        for setting in results["settings"]:
            out += _grid(
                {**results, "cells": tested},
                setting["id"],
                lambda c, stacked, m=metric, b=b: _cell(_comparison(c, m, b), stacked),
                title,
                width,
            )
        out.append(_best_line(tested, metric, b))
    for key in sorted({k for c in cells for k in c["mean"] if k.startswith("gate_entropy")}):
        for setting in results["settings"]:
            out += _grid(
                results,
                setting["id"],
                lambda c, stacked, k=key: fmt(c["mean"].get(k)),
                f"{key} (1 = uniform mask, 0 = one-hot)",
                width,
            )
    if results.get("error"):
        out.append(f"[red]sweep {results['status']}: {results['error']}[/red]")
    return out


def legend(results: dict) -> str:
    """What the marks mean and how the p-values behind them were adjusted."""
    rows = [c for s in results["settings"] for c in s.get("comparisons", [])]
    rows += [c for cell in results["cells"] for c in cell["comparisons"]]
    method = rows[0].get("adjustment", "none") if rows else "none"
    how = (
        "p unadjusted"
        if method == "none"
        else f"p adjusted with {method} per metric and pair across every cell and setting"
    )
    return (
        f"[dim]{MARKS['supported']} supported  {MARKS['contradicted']} contradicted  "
        f"{MARKS['equivalent']} equivalent (|a − b| < δ)  · inconclusive  ({how})[/dim]"
    )


def settings_table(results: dict, width: int | None = None) -> list[Table]:
    """A sweep without gating axes (e.g. over beta): per setting, the metrics as rows and its
    conditions as columns (mean ± std over seeds, as a run's table), and a last row saying
    how each condition's hypotheses came out. Laid out to fit ``width`` (acc.fit)."""
    out = []
    for setting in results["settings"]:
        conditions = setting.get("conditions", {})
        keys = sorted(
            {k for e in conditions.values() for k, v in e["mean"].items() if _number(v)},
            key=metric_order,
        )
        title = f"setting {escape(setting['id'])}: mean ± std over seeds; hypotheses (a vs b)"
        out += fit_columns(
            lambda names, stacked, s=setting, k=keys, t=title: _setting_rows(
                s, k, names, stacked, t
            ),
            list(conditions),
            width,
        )
    return out


def _setting_rows(setting: dict, keys: list, names, stacked: bool, title: str) -> Table:
    conditions = setting["conditions"]
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    for name in names:
        table.add_column(escape(name), justify="right", overflow="fold")
    for key in keys:
        cells = [
            fmt(conditions[n]["mean"].get(key), conditions[n]["std"].get(key), stacked)
            for n in names
        ]
        table.add_row(escape(key), *cells)
    summaries = []
    for name in names:
        verdicts = [c["verdict"] for c in setting.get("comparisons", []) if c["a"] == name]
        summaries.append(
            " ".join(f"{MARKS[v]} {verdicts.count(v)}" for v in MARKS if verdicts.count(v))
        )
    table.add_row("hypotheses", *summaries)
    return table


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pairs(cells: list[dict]) -> list[tuple[str, str]]:
    """(metric, b) of every heatmap: b is the compared side without its cell label
    (standard, or a control such as shuffled at the same cell)."""
    seen: dict[tuple[str, str], None] = {}
    for cell in cells:
        for c in cell["comparisons"]:
            seen.setdefault((c["metric"], _side(c["b"])))
    return sorted(seen, key=lambda pair: pair[1] != "standard")  # vs standard first


def _side(name: str) -> str:
    return name.partition("[")[0]


def _comparison(cell: dict, metric: str, b: str) -> dict | None:
    return next(
        (c for c in cell["comparisons"] if c["metric"] == metric and _side(c["b"]) == b), None
    )


def _cell(c: dict | None, stacked: bool = False) -> str:
    """The mean difference, its 95% interval and the verdict's mark; ``stacked``: the
    interval on a line of its own (narrow outputs)."""
    if c is None or c["mean_diff"] is None:
        return "–"
    if c["ci95"] is None:
        return f"{c['mean_diff']:+.3g} (n={c['n']})"
    low, high = c["ci95"]
    interval = escape(f"[{low:+.2g}, {high:+.2g}]")
    if stacked:
        return f"{c['mean_diff']:+.3g} {MARKS[c['verdict']]}\n{interval}"
    return f"{c['mean_diff']:+.3g} {interval} {MARKS[c['verdict']]}"


def _grid(results: dict, setting: str, text, title: str, width: int | None) -> list[Table]:
    """Cells of one setting laid out: the first gating axis down, the rest across; fitted to
    ``width`` (cells stacked, then the columns split over tables that repeat the rows)."""
    cells = [c for c in results["cells"] if c["setting"] == setting]
    axes = list(cells[0]["params"]) if cells else []
    rows, columns = _values(cells, axes[:1]), _values(cells, axes[1:])
    across = f" \\ {', '.join(axes[1:])}" if len(axes) > 1 else ""

    def build(shown, stacked: bool) -> Table:
        table = Table(title=f"{escape(title)} · {escape(setting)}")
        table.add_column(escape(f"{axes[0]}{across}") if axes else "cell", overflow="fold")
        for column in shown:
            table.add_column(escape(column or "gated"), justify="right", overflow="fold")
        for row in rows:
            texts = []
            for column in shown:
                match = [
                    c for c in cells if _label(c, axes[:1]) == row and _label(c, axes[1:]) == column
                ]
                texts.append(text(match[0], stacked) if match else "")
            table.add_row(escape(row), *texts)
        return table

    return fit_columns(build, columns, width)


def _values(cells: list[dict], axes: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for cell in cells:
        seen.setdefault(_label(cell, axes))
    return list(seen)


def _label(cell: dict, axes: list[str]) -> str:
    return ",".join(
        f"{k}={cell['params'][k]}" if len(axes) > 1 else str(cell["params"][k]) for k in axes
    )


def _best_line(cells: list[dict], metric: str, b: str = "standard") -> str:
    """The cell whose mean difference (gated - b) goes furthest the hypothesised way."""
    rows = [(cell, _comparison(cell, metric, b)) for cell in cells]
    rows = [(cell, c) for cell, c in rows if c is not None and c["mean_diff"] is not None]
    if not rows:
        return f"{escape(metric)}: no cell has a result yet"
    sign = -1 if rows[0][1]["direction"] == "lower" else 1
    cell, c = max(rows, key=lambda pair: sign * pair[1]["mean_diff"])
    params = ", ".join(f"{k}={v}" for k, v in cell["params"].items())
    versus = "" if b == "standard" else f" vs {b}"
    return (
        f"best for [bold]{escape(metric)}[/bold]{versus} ({c['direction']} is the hypothesis): "
        f"{escape(params)} in {escape(cell['setting'])}: {_cell(c)} ({c['verdict']})"
    )
