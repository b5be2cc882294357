"""Statistics over seeds: mean ± sample std per condition, paired 95% intervals, verdicts.

For a hypothesis "gated < standard" on a metric, the paired differences are
d_s = gated_s - standard_s over seeds s; the 95% interval is mean(d) ± t(0.975, n-1) · sd(d)/√n.
Verdict: "supported" where the interval excludes 0 on the hypothesised side, "contradicted"
where it excludes 0 on the other side, else "inconclusive". With n < 2 there is no interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Hypothesis:
    """``treatment`` has a lower/higher ``metric`` than ``control``, paired by seed.

    With ``minus`` set, the compared per-run value is ``metric - minus`` (a difference of
    differences, e.g. whether gating changes conv1 more than conv2).
    """

    metric: str
    expect: Literal["lower", "higher"]
    treatment: str = "gated"
    control: str = "standard"
    minus: str | None = None
    name: str | None = None  # the comparison key; defaults to ``metric``
    statement: str | None = None  # how the README/table says it; defaults to "gated < standard"

    @property
    def key(self) -> str:
        return self.name or self.metric

    @property
    def text(self) -> str:
        sign = "<" if self.expect == "lower" else ">"
        return self.statement or f"{self.treatment} {sign} {self.control}"

    def value(self, metrics: dict) -> float | None:
        a = metrics.get(self.metric)
        b = metrics.get(self.minus) if self.minus else 0.0
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return None
        return float(a) - float(b)

    def to_dict(self) -> dict:
        return asdict(self)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None with fewer than two values."""
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def paired_comparison(diffs: list[float], expect: Literal["lower", "higher"]) -> dict:
    """Mean paired difference, its t-based 95% interval and the verdict."""
    mean, sd = mean_std(diffs)
    result = {"n": len(diffs), "mean_diff": mean, "ci95": None, "verdict": INCONCLUSIVE}
    if sd is None:
        return result
    from scipy import stats as scipy_stats  # here: importing it costs every worker 0.5 s

    half = scipy_stats.t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    low, high = mean - half, mean + half
    result["ci95"] = [low, high]
    below, above = high < 0, low > 0
    if (expect == "lower" and below) or (expect == "higher" and above):
        result["verdict"] = SUPPORTED
    elif (expect == "lower" and above) or (expect == "higher" and below):
        result["verdict"] = CONTRADICTED
    return result


def compare(hypothesis: Hypothesis, runs_by_condition: dict[str, dict[int, dict]]) -> dict:
    """Apply ``hypothesis`` to per-seed metrics ``{condition: {seed: metrics}}``: one row of
    the results' ``comparisons`` (``a`` - ``b`` paired by seed, as DESIGN.md describes)."""
    treated = runs_by_condition.get(hypothesis.treatment, {})
    control = runs_by_condition.get(hypothesis.control, {})
    diffs = []
    for seed in sorted(set(treated) & set(control)):
        t, c = hypothesis.value(treated[seed]), hypothesis.value(control[seed])
        if t is not None and c is not None:
            diffs.append(t - c)
    out = {
        "metric": hypothesis.key,
        "a": hypothesis.treatment,
        "b": hypothesis.control,
        "direction": hypothesis.expect,
        "hypothesis": hypothesis.text,
        **paired_comparison(diffs, hypothesis.expect),
    }
    if hypothesis.minus:
        out["definition"] = (
            f"({hypothesis.metric} - {hypothesis.minus}), "
            f"{hypothesis.treatment} - {hypothesis.control}"
        )
    return out
