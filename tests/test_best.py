"""The star in comparison tables: best by the metric's direction, and only by more than noise
(one definition, acc.best, read by the CLI table and the dashboard)."""

from __future__ import annotations

from acc.best import best_conditions


def conditions(key: str, *entries: tuple[str, float, float | None, int]) -> dict:
    return {name: {"mean": {key: mean}, "std": {key: std}, "n": n}
            for name, mean, std, n in entries}  # fmt: skip


def test_no_star_on_a_tie_at_the_shown_precision():
    assert best_conditions(conditions("dead_units", ("standard", 15.0, 0.0, 3),
                                      ("gated", 15.0, 0.0, 3))) == {}  # fmt: skip
    assert best_conditions(conditions("weight_cosine_sim", ("standard", 0.30831, None, 1),
                                      ("gated", 0.308312, None, 1))) == {}  # fmt: skip


def test_one_seed_stars_any_visible_difference_in_the_metrics_direction():
    lower = conditions("weight_cosine_sim", ("standard", 0.31, None, 1), ("gated", 0.30, None, 1))
    assert best_conditions(lower) == {"weight_cosine_sim": "gated"}
    higher = conditions("effective_rank", ("standard", 31.0, None, 1), ("gated", 30.0, None, 1))
    assert best_conditions(higher) == {"effective_rank": "standard"}


def test_with_seeds_the_gap_must_beat_the_combined_std():
    noisy = conditions("psnr", ("standard", 20.0, 0.3, 3), ("gated", 20.4, 0.3, 3))
    assert best_conditions(noisy) == {}  # 0.4 <= sqrt(0.09 + 0.09) = 0.42
    clear = conditions("psnr", ("standard", 20.0, 0.3, 3), ("gated", 20.5, 0.3, 3))
    assert best_conditions(clear) == {"psnr": "gated"}


def test_metrics_without_a_direction_and_single_conditions_get_no_star():
    assert best_conditions(conditions("gate_entropy", ("standard", 1.0, None, 1),
                                      ("gated", 0.5, None, 1))) == {}  # fmt: skip
    assert best_conditions(conditions("psnr", ("gated", 20.0, None, 1))) == {}
    # issue 20, defect 13: neither a higher nor a lower spread of sparsity over images is better
    for key in ("sparsity_variance", "sparsity_variance[conv1]"):
        assert best_conditions(conditions(key, ("standard", 0.0019, None, 1),
                                          ("gated", 0.0030, None, 1))) == {}  # fmt: skip
