"""A results JSON (``acc run ... --json``, ``acc show RUN_ID --json``) as the README's markdown
tables: each condition's metrics as mean ± std over seeds, then every hypothesis with its mean
difference, 95% interval, adjusted p, δ, mde80 and adjusted verdict (with what an inconclusive
one excluded and the seeds it would need). A sweep's JSON gets, per heatmap (metric and pair)
and setting, its cells' verdicts before and after the heatmap's adjustment, and the grid of
cells that survive it. The README's results sections are made with it, so their numbers are
the stored ones, not copied by hand.

    python bench/results_markdown.py RESULTS.json [--metrics l1,psnr,...]
"""

from __future__ import annotations

import argparse
import json
import statistics


def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits + 1}g}"
    return f"{value:.{digits}g}"


def signed(value: float | None) -> str:
    if value is None:
        return "–"
    return ("+" if value >= 0 else "−") + number(abs(value)).lstrip("-")


def condition_table(results: dict, only: list[str] | None) -> list[str]:
    """Rows: scalar metrics; columns: conditions; cells: mean ± std over the completed seeds."""
    conditions = results["conditions"]
    values: dict[str, dict[str, list[float]]] = {}
    for name, entry in conditions.items():
        for run in entry["runs"]:
            for key, value in (run.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    values.setdefault(key, {}).setdefault(name, []).append(float(value))
    seeds = max(len(entry["runs"]) for entry in conditions.values())
    lines = [
        f"| metric (mean ± std, {seeds} seeds) | " + " | ".join(conditions) + " |",
        "|---" * (len(conditions) + 1) + "|",
    ]
    for key in sorted(values):
        if only and key.split("[")[0] not in only:
            continue
        cells = []
        for name in conditions:
            column = values[key].get(name, [])
            spread = statistics.stdev(column) if len(column) > 1 else None
            cells.append(
                "–"
                if not column
                else number(statistics.fmean(column))
                + (f" ± {number(spread, 2)}" if spread is not None else "")
            )
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def hypothesis_table(results: dict) -> list[str]:
    lines = [
        "| hypothesis | mean diff [95% CI] | p (adj.) | δ | mde80 | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in results["comparisons"]:
        low, high = c["ci95"]
        p = c["p_adjusted"]
        verdict = c["verdict"]
        if verdict in ("supported", "contradicted"):
            verdict = f"**{verdict}**"
        if c.get("verdict_note"):
            verdict += f" ({c['verdict_note']})"
        name = c.get("hypothesis", "")
        label = name if name.startswith(c["metric"]) else f"{c['metric']}: {name}"
        lines.append(
            f"| {label} | {signed(c['mean_diff'])} [{signed(low)}, {signed(high)}] | "
            f"{'< 0.001' if p < 0.001 else f'{p:.3f}'} | {number(c['delta'])} | "
            f"{number(c['mde80'])} | {verdict.replace('|', chr(92) + '|')} |"
        )
    return lines


MARKS = {"supported": "✓", "contradicted": "✗", "equivalent": "=", "inconclusive": "·"}


def sweep_tables(results: dict) -> list[str]:
    """Per heatmap (metric, pair) and setting: how many cells each verdict had unadjusted and
    has adjusted; then, per heatmap and setting, the grid (first axis down, second across)
    of adjusted marks, with the unadjusted mark after it where the adjustment changed it."""
    grids: list[str] = []
    cells = results["cells"]
    keys = sorted({(c["metric"], c["b"]) for cell in cells for c in cell["comparisons"]})
    lines = [
        "| heatmap | setting | unadjusted ✓ / ✗ | adjusted ✓ / ✗ / = | cells |",
        "|---|---|---|---|---|",
    ]
    for metric, b in keys:
        for setting in results["settings"]:
            found = [
                (cell, c)
                for cell in cells
                if cell["setting"] == setting["id"]
                for c in cell["comparisons"]
                if c["metric"] == metric and c["b"] == b
            ]
            if not found:
                continue
            before = [c["verdict_unadjusted"] for _, c in found]
            after = [c["verdict"] for _, c in found]
            lines.append(
                f"| {metric} (gated − {b}) | {setting['id']} | "
                f"{before.count('supported')} / {before.count('contradicted')} | "
                f"{after.count('supported')} / {after.count('contradicted')} / "
                f"{after.count('equivalent')} | {len(found)} |"
            )
            grids += _grid(metric, b, setting["id"], found)
    return lines + [""] + grids


def _axis_names(found: list) -> tuple[str, str]:
    names = list(found[0][0]["params"])
    return names[0], names[1] if len(names) > 1 else names[0]


def _grid(metric: str, b: str, setting: str, found: list) -> list[str]:
    down, across = _axis_names(found)
    ys = sorted({cell["params"][down] for cell, _ in found}, key=_order)
    xs = sorted({cell["params"][across] for cell, _ in found}, key=_order)
    out = [
        f"{metric} (gated − {b}), {setting}: {down} down, {across} across; adjusted mark, "
        "the unadjusted one in brackets where it differs",
        "",
        f"| {down} \\ {across} | " + " | ".join(str(x) for x in xs) + " |",
        "|---" * (len(xs) + 1) + "|",
    ]
    for y in ys:
        row = []
        for x in xs:
            match = [
                c for cell, c in found if cell["params"][down] == y and cell["params"][across] == x
            ]
            if not match:
                row.append("")
                continue
            c = match[0]
            mark = MARKS[c["verdict"]]
            if c["verdict_unadjusted"] != c["verdict"]:
                mark += f" ({MARKS[c['verdict_unadjusted']]})"
            row.append(f"{signed(c['mean_diff'])} {mark}")
        out.append(f"| {y} | " + " | ".join(row) + " |")
    return out + [""]


def _order(value):
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results JSON file")
    parser.add_argument("--metrics", help="comma-separated base metric names to show (default all)")
    args = parser.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    only = args.metrics.split(",") if args.metrics else None
    if "sweep_id" in results:
        print(f"sweep {results['sweep_id']} ({results['recipe']})\n")
        print("\n".join(sweep_tables(results)))
        return
    print(f"run {results['run_id']} ({results['recipe']}), correction "
          f"{results['config'].get('correction', 'holm')}\n")  # fmt: skip
    print("\n".join(condition_table(results, only)))
    print()
    print("\n".join(hypothesis_table(results)))


if __name__ == "__main__":
    main()
