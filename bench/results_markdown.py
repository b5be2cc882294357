"""A results JSON (``acc run ... --json``, ``acc show RUN_ID --json``) as the README's markdown
tables: each condition's metrics as mean ± std over seeds, then every hypothesis with its mean
difference, 95% interval, adjusted p, δ, mde80 and adjusted verdict (with what an inconclusive
one excluded and the seeds it would need). The README's results sections are made with it, so
their numbers are the stored ones, not copied by hand.

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


def signed(value: float) -> str:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results JSON file")
    parser.add_argument("--metrics", help="comma-separated base metric names to show (default all)")
    args = parser.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    only = args.metrics.split(",") if args.metrics else None
    print(f"run {results['run_id']} ({results['recipe']}), correction "
          f"{results['config'].get('correction', 'holm')}\n")  # fmt: skip
    print("\n".join(condition_table(results, only)))
    print()
    print("\n".join(hypothesis_table(results)))


if __name__ == "__main__":
    main()
