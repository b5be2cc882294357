"""Statistics over seeds: mean ± sample std per condition, and per hypothesis one comparison
row (DESIGN.md "Statistics over seeds" and "Decisions over many hypotheses").

For a hypothesis "gated < standard" on a metric, the paired differences are
d_s = gated_s - standard_s over seeds s. A row holds their mean and sd, the t intervals (95%,
and 90% for equivalence), the two-sided paired t-test's p-value, whether the effect is smaller
than the smallest effect of interest ``delta`` (two one-sided tests), the smallest effect the
design detects (``mde80``) and the seeds that would detect ``delta`` (``seeds_needed``).
``verdict`` is decided on the adjusted p-value: a row on its own is a family of one, and
``acc.decisions.adjust`` re-decides a family's rows together.

Every number comes from scipy.stats or statsmodels, imported inside the functions: importing
them costs every worker process seconds, and workers never compare.

Degenerate inputs give numbers, never NaN (JSON has none): with n < 2 there is no interval,
p-value or power; a difference with zero spread (sd 0) has no t statistic: with mean 0 (a gate
of strength 0, bit-identical to standard) p = 1; otherwise (a count such as active_units that
moved by the same whole unit in every seed) p is the exact sign-flip permutation test's,
2 / 2^n, so that two seeds agreeing cannot decide anything (p = 0.5) and six can (0.031). Its
intervals are the point, it is equivalent when |mean| < delta, mde80 is 0, and the seeds needed
are the fewest at which that permutation test can reach 5% (6).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

SUPPORTED, CONTRADICTED = "supported", "contradicted"
EQUIVALENT, INCONCLUSIVE = "equivalent", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, EQUIVALENT, INCONCLUSIVE)
# the fewest seeds at which a difference repeated exactly in every seed reaches p < 0.05 by
# the sign-flip test (2 / 2^n: 0.0625 at 5 seeds, 0.031 at 6)
ZERO_SPREAD_SEEDS = 6
ALPHA = 0.05  # every test, interval and power calculation is at 5%
POWER = 0.8  # mde80 and seeds_needed: 80% power


@dataclass(frozen=True)
class Hypothesis:
    """``treatment`` has a lower/higher ``metric`` than ``control``, paired by seed.

    With ``minus`` set, the compared per-run value is ``metric - minus`` (a difference of
    differences, e.g. whether gating changes conv1 more than conv2). ``delta`` is the smallest
    effect of interest in the metric's units (None: the metric's default, acc.decisions).
    """

    metric: str
    expect: Literal["lower", "higher"]
    treatment: str = "gated"
    control: str = "standard"
    minus: str | None = None
    name: str | None = None  # the comparison key; defaults to ``metric``
    statement: str | None = None  # how the README/table says it; defaults to "gated < standard"
    delta: float | None = None

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


def paired_comparison(
    diffs: list[float], expect: Literal["lower", "higher"], delta: float | None = None
) -> dict:
    """Every statistic of one hypothesis' paired differences, decided as a family of one."""
    mean, sd = mean_std(diffs)
    n = len(diffs)
    row = {
        "n": n,
        "mean_diff": mean,
        "sd_diff": sd,
        "ci95": None,
        "ci90": None,
        "p_value": None,
        "p_adjusted": None,
        "adjustment": "none",
        "family": None,
        "family_size": 0,
        "delta": delta,
        "equivalent": False,
        "mde80": None,
        "seeds_needed": None,
        "verdict": INCONCLUSIVE,
        "verdict_unadjusted": INCONCLUSIVE,
        "verdict_note": None,
    }
    if sd is not None:
        row.update(_tests(tuple(diffs), delta))
        row["p_adjusted"], row["family_size"] = row["p_value"], 1
        row["verdict_unadjusted"] = interval_verdict(row["ci95"], expect)
    decide(row, expect)
    return row


@lru_cache(maxsize=8192)  # a sweep's page re-reads the same rows every few seconds
def _tests(diffs: tuple[float, ...], delta: float | None) -> dict:
    """The library calls of a row (n >= 2), cached: they cost milliseconds each."""
    mean, sd = mean_std(list(diffs))
    n = len(diffs)
    out = {
        "ci95": t_interval(mean, sd, n, 0.95),
        "ci90": t_interval(mean, sd, n, 0.90),
        "p_value": p_value(list(diffs), mean, sd),
        "mde80": mde80(sd, n),
    }
    if delta is not None:
        out["equivalent"] = equivalent(list(diffs), mean, sd, delta)
        out["seeds_needed"] = seeds_needed(sd, delta)
    return out


def t_interval(mean: float, sd: float, n: int, level: float) -> list[float]:
    """mean ± t((1 + level) / 2, n - 1) · sd / √n."""
    from scipy import stats as scipy_stats

    half = float(scipy_stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return [mean - half, mean + half]


def p_value(diffs: list[float], mean: float, sd: float) -> float:
    """Two-sided one-sample t-test of mean(d) = 0 (= the paired t-test of a vs b)."""
    from scipy import stats as scipy_stats

    if sd == 0:  # no t statistic (scipy would answer NaN): the exact sign-flip test instead
        if mean == 0:
            return 1.0
        flips = scipy_stats.permutation_test(
            (diffs,), lambda d, axis: d.mean(axis=axis), permutation_type="samples"
        )
        return float(flips.pvalue)
    return float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)


def interval_verdict(ci95: list[float], expect: str) -> str:
    """The rule before multiplicity was taken into account: the 95% interval excludes 0."""
    low, high = ci95
    if (expect == "lower" and high < 0) or (expect == "higher" and low > 0):
        return SUPPORTED
    if (expect == "lower" and low > 0) or (expect == "higher" and high < 0):
        return CONTRADICTED
    return INCONCLUSIVE


def equivalent(diffs: list[float], mean: float, sd: float, delta: float) -> bool:
    """Two one-sided t-tests at 5% (statsmodels' TOST) that mean(d) lies in (-delta, delta):
    the same as the 90% interval lying inside it."""
    if sd == 0:
        return abs(mean) < delta
    from statsmodels.stats.weightstats import DescrStatsW

    p, _, _ = DescrStatsW(diffs).ttost_mean(-delta, delta)
    return bool(p < ALPHA)


def mde80(sd: float, n: int) -> float | None:
    """The smallest |mean(d)| detected with 80% power at 5% (two-sided paired t, n seeds)."""
    effect = _detectable_effect_size(n)
    return sd * effect if math.isfinite(effect) else None


@lru_cache(maxsize=64)  # one root-finding per seed count, not per row
def _detectable_effect_size(n: int) -> float:
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(nobs=n, alpha=ALPHA, power=POWER))


def seeds_needed(sd: float, delta: float) -> int | None:
    """The fewest seeds (at least 2) at which an effect of ``delta`` is detected with 80%
    power given this sd: the smallest integer n where statsmodels' power reaches 0.8, the
    ceiling of ``TTestPower().solve_power``'s root. The search starts at the z-test's n, a
    lower bound (knowing sd can only add power), and steps up, a few power evaluations where
    the root-finder takes dozens."""
    if sd == 0:
        return ZERO_SPREAD_SEEDS
    from scipy.stats import norm
    from statsmodels.stats.power import TTestPower

    analysis, effect = TTestPower(), delta / sd
    z = norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER)
    start = max(2, math.ceil((z / effect) ** 2))
    for n in range(start, start + 100):
        if _power(analysis, effect, n) >= POWER:
            return n
    return None  # not reached for any finite effect; no answer rather than a wrong one


def _power(analysis, effect: float, n: int) -> float:
    """Two-sided power; where scipy's noncentral t answers NaN for the far lower tail (large
    effects, few seeds), that tail is ~0 and the upper one alone is the power."""
    power = analysis.power(effect_size=effect, nobs=n, alpha=ALPHA)
    if math.isnan(power):
        power = analysis.power(effect_size=effect, nobs=n, alpha=ALPHA / 2, alternative="larger")
    return float(power)


def decide(row: dict, expect: str) -> None:
    """The verdict from the adjusted p-value: supported / contradicted at p_adjusted < 0.05 by
    the sign of the mean difference, else equivalent (TOST), else inconclusive with a note
    saying what the data do exclude and how many seeds would decide."""
    p, mean = row["p_adjusted"], row["mean_diff"]
    if p is not None and p < ALPHA:
        wanted = mean < 0 if expect == "lower" else mean > 0
        row["verdict"] = SUPPORTED if wanted else CONTRADICTED
    elif row["equivalent"]:
        row["verdict"] = EQUIVALENT
    else:
        row["verdict"] = INCONCLUSIVE
    row["verdict_note"] = inconclusive_note(row) if row["verdict"] == INCONCLUSIVE else None


def inconclusive_note(row: dict) -> str:
    """What an inconclusive row still says: effects beyond the 90% interval's reach are
    excluded (at 5% each side), and ``seeds_needed`` seeds would detect ``delta``."""
    if row["ci90"] is None:
        return "needs ≥ 2 seeds" if row["n"] else "no paired seeds"
    reach = max(abs(row["ci90"][0]), abs(row["ci90"][1]))
    parts = [f"excludes |d| > {reach:.2g}"]
    if row["seeds_needed"] is not None and row["seeds_needed"] > row["n"]:
        parts.append(f"needs {row['seeds_needed']:,} seeds")
    return "; ".join(parts)


def compare(hypothesis: Hypothesis, runs_by_condition: dict[str, dict[int, dict]]) -> dict:
    """Apply ``hypothesis`` to per-seed metrics ``{condition: {seed: metrics}}``: one row of
    the results' ``comparisons`` (``a`` - ``b`` paired by seed, as DESIGN.md describes)."""
    treated = runs_by_condition.get(hypothesis.treatment, {})
    control = runs_by_condition.get(hypothesis.control, {})
    diffs = []
    for seed in sorted(set(treated) & set(control)):
        t, c = hypothesis.value(treated[seed]), hypothesis.value(control[seed])
        if t is not None and c is not None and math.isfinite(t - c):
            diffs.append(t - c)  # a diverged seed (NaN, inf) has no difference to count
    out = {
        "metric": hypothesis.key,
        "a": hypothesis.treatment,
        "b": hypothesis.control,
        "direction": hypothesis.expect,
        "hypothesis": hypothesis.text,
        **paired_comparison(diffs, hypothesis.expect, hypothesis.delta),
    }
    if hypothesis.minus:
        out["definition"] = (
            f"({hypothesis.metric} - {hypothesis.minus}), "
            f"{hypothesis.treatment} - {hypothesis.control}"
        )
    return out
