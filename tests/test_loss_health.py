"""LossHealth: thresholds in each task's own units, and verdicts on real training."""

from __future__ import annotations

import math

import pytest

from acc.data import Dataset, Split
from acc.loss_health import Health, LossThresholds, assess, classify
from acc.runner import create_run, execute_run
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask


def _data(shape) -> Dataset:
    import torch

    images = torch.zeros(4, *shape)
    return Dataset("zeros", "x", Split(images, torch.zeros(4)), Split(images, torch.zeros(4)))


@pytest.mark.parametrize(
    "loss,step,expected",
    [
        (0.05, 1000, Health.HEALTHY),
        (0.3, 1000, Health.SUSPICIOUS),  # stuck above what predicting zeros scores
        (0.3, 50, Health.HEALTHY),  # early losses are high by nature: not judged yet
        (0.7, 5, Health.DIVERGED),  # worse than an untrained model, at any step
        (math.nan, 5, Health.DIVERGED),
        (math.inf, 5000, Health.DIVERGED),
        (None, 5000, Health.HEALTHY),
    ],
)
def test_per_pixel_reconstruction(loss, step, expected):
    task = ReconstructionTask("r", _data((784,)))
    assert classify(task.loss_thresholds(), loss, step) == expected


def test_a_sum_over_pixels_scales_the_thresholds_by_the_pixel_count():
    mean = ReconstructionTask("r", _data((1, 32, 32))).loss_thresholds()
    summed = ReconstructionTask("r", _data((1, 32, 32)), reduction="sum").loss_thresholds()
    assert summed.diverged_above == pytest.approx(mean.diverged_above * 1024)
    assert summed.suspicious_above == pytest.approx(mean.suspicious_above * 1024)
    # a healthy level-2 loss (about 21 summed per image) is healthy, not "diverged"
    assert classify(summed, 21.0, 5000) == Health.HEALTHY
    assert classify(mean, 21.0, 5000) == Health.DIVERGED  # what per-pixel thresholds would say
    mse = ReconstructionTask("r", _data((784,)), loss="mse").loss_thresholds()
    assert mse.diverged_above < mean.diverged_above


def test_kl_thresholds_catch_explosion_and_collapse_after_warm_up():
    task = KLDivergenceTask("kl", _data((784,)), weight=0.05, warmup_steps=1000)
    thresholds = task.loss_thresholds()
    assert classify(thresholds, 50.0, 5000) == Health.HEALTHY
    assert classify(thresholds, 0.01, 5000) == Health.SUSPICIOUS  # posterior collapse
    assert classify(thresholds, 0.01, 500) == Health.HEALTHY  # still warming up
    assert classify(thresholds, 2e5, 10) == Health.DIVERGED
    assert task.describe()["loss_thresholds"] == thresholds.to_dict()


def test_eval_only_tasks_have_no_opinion_and_assess_skips_them():
    weights = WeightDiversityTask("w", _data((784,)), "encoder.0")
    recon = ReconstructionTask("r", _data((784,)))
    assert weights.loss_thresholds() is None and "loss_thresholds" not in weights.describe()
    verdicts = assess([recon, weights], {"r": 0.9}, 10)
    assert verdicts == {"r": Health.DIVERGED}
    assert classify(LossThresholds(1.0, 0.5), 0.75, 0) == Health.HEALTHY


def test_a_real_level2_run_is_healthy(store, small_mnist_dir):
    params = {"steps": 250, "seeds": [1], "eval_every": 0, "batch_size": 16}  # real digits
    run_id = create_run(store, "gradient_gating_l2", params, "cpu", small_mnist_dir)
    results = execute_run(store, run_id)
    for entry in results["conditions"].values():
        [run] = entry["runs"]
        assert run["health"] == {"reconstruction": "healthy", "kl": "healthy"}, run


def test_a_nan_loss_is_recorded_as_diverged(store):
    # a temperature this small overflows the gate's softmax: the gated branch's loss turns NaN
    params = {"steps": 20, "seeds": [1], "eval_every": 0, "temperature": 1e-45}
    results = execute_run(store, create_run(store, "gradient_gating_l0", params, "cpu"))
    [gated] = results["conditions"]["gated"]["runs"]
    assert gated["status"] == "failed" and "non-finite loss" in gated["error"]
    assert gated["health"] == {"reconstruction": "diverged"}
    assert results["status"] == "partial"
