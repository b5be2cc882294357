"""Which condition is best at a metric, when the difference is worth a star.

One definition for the CLI table and the dashboard (they both read ``best`` from the results
JSON): the best mean by the metric's direction gets a star only when it beats the runner-up by
more than noise. A tie at the precision the tables show (4 significant digits) gets none; with
two or more seeds on both sides, the gap must exceed their combined standard deviation
sqrt(std_best^2 + std_runner_up^2). With one seed there is no spread to compare, so any
visible difference counts.
"""

from __future__ import annotations

import math

from acc.eval_metric import split_key

SHOWN_DIGITS = 4  # significant digits of the comparison tables


def best_conditions(conditions: dict[str, dict]) -> dict[str, str]:
    """metric key -> the condition that earns the star (metrics without one are left out).

    ``conditions``: name -> {"mean": {key: float}, "std": {key: float | None}, "n": int}."""
    keys = {k for c in conditions.values() for k, v in c["mean"].items() if _number(v)}
    out = {}
    for key in sorted(keys):
        winner = _winner(key, conditions)
        if winner:
            out[key] = winner
    return out


def _winner(key: str, conditions: dict[str, dict]) -> str | None:
    metric, _ = split_key(key)
    ranked = [(name, c) for name, c in conditions.items() if _number(c["mean"].get(key))]
    if metric is None or metric.higher_is_better is None or len(ranked) < 2:
        return None
    ranked.sort(key=lambda item: item[1]["mean"][key], reverse=metric.higher_is_better)
    (best, b), (_, r) = ranked[0], ranked[1]
    if _shown(b["mean"][key]) == _shown(r["mean"][key]):
        return None  # a tie as far as anyone reading the table can see
    if b["n"] >= 2 and r["n"] >= 2:
        spread = math.hypot(b["std"].get(key) or 0.0, r["std"].get(key) or 0.0)
        if abs(b["mean"][key] - r["mean"][key]) <= spread:
            return None  # within the seeds' noise
    return best


def _shown(value: float) -> str:
    return f"{value:.{SHOWN_DIGITS}g}"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
