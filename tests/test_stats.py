"""Seed statistics: mean/std, paired t intervals and verdicts, against hand-computed values
(p-values, families, equivalence and power: test_stats_decisions.py)."""

from __future__ import annotations

import math

import pytest

from acc.stats import Hypothesis, compare, mean_std, paired_comparison

T_975_DF2 = 4.302652729911275  # t(0.975, 2), from tables


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, None)
    assert mean_std([]) == (None, None)


def test_paired_interval_and_supported_verdict():
    out = paired_comparison([-1.9, -2.0, -2.1], "lower")
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert out["mean_diff"] == pytest.approx(-2.0)
    assert out["ci95"] == pytest.approx([-2.0 - half, -2.0 + half])
    assert out["verdict"] == "supported"
    assert paired_comparison([-1.9, -2.0, -2.1], "higher")["verdict"] == "contradicted"
    # the same mean with a wide spread: the interval [-4.48, 0.48] includes 0
    assert paired_comparison([-1.0, -2.0, -3.0], "lower")["verdict"] == "inconclusive"


def test_interval_spanning_zero_is_inconclusive():
    assert paired_comparison([-1.0, 1.0, 0.5], "lower")["verdict"] == "inconclusive"


def test_one_seed_has_no_interval():
    out = paired_comparison([-3.0], "lower")
    assert {k: out[k] for k in ("n", "mean_diff", "ci95", "verdict")} == {
        "n": 1,
        "mean_diff": -3.0,
        "ci95": None,
        "verdict": "inconclusive",
    }
    assert (
        out["p_value"] is None
        and out["mde80"] is None
        and out["verdict_unadjusted"] == ("inconclusive")
    )


def test_compare_pairs_by_seed_and_supports_difference_of_differences():
    runs = {
        "standard": {1: {"a": 1.0, "b": 1.0}, 2: {"a": 2.0, "b": 1.5}, 3: {"a": 9.0}},
        "gated": {1: {"a": 0.5, "b": 0.9}, 2: {"a": 1.4, "b": 1.45}},
    }
    out = compare(Hypothesis("a", "lower"), runs)
    assert out["n"] == 2  # seed 3 has no gated partner
    assert out["mean_diff"] == pytest.approx(-0.55)
    assert out["hypothesis"] == "gated < standard"
    depth = Hypothesis("a", "lower", minus="b", name="depth")
    out = compare(depth, runs)
    # seed 1: (0.5-0.9) - (1-1) = -0.4; seed 2: (1.4-1.45) - (2-1.5) = -0.55
    assert out["mean_diff"] == pytest.approx(-0.475)
    assert depth.key == "depth"
