"""DCI's fast estimator (HistGradientBoosting on GradientBoosting's split points) against the
reference one on codes whose answers are known, and the level-3 final evaluation's passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acc.boosting_importance import HistBooster, importances, split_points
from acc.data import Dataset, Split
from acc.disentanglement import dci
from acc.recipes.gradient_gating_l3 import GradientGatingL3
from acc.tasks.base import shared_test_pass
from acc.tasks.base import test_batches as batches_of
from acc.tasks.disentanglement import DisentanglementTask
from acc.tasks.traversal_specificity import TraversalSpecificityTask
from acc.trainer import evaluate_tasks

# ---------------------------------------------------------------- split points and importances


def test_split_points_are_the_midpoints_when_few_values():
    assert split_points(np.array([3.0, 1.0, 2.0, 2.0, 5.0])).tolist() == [1.5, 2.5, 4.0]


def test_split_points_cross_every_gap_between_clusters():
    """10 tight clusters of 100 values, 1,000 distinct values: a split point in each of the 9
    gaps, at its middle (quantiles alone fall inside clusters and miss most gaps)."""
    rng = np.random.default_rng(0)
    values = np.repeat(np.arange(10.0), 100) + 1e-3 * rng.normal(size=1000)
    points = split_points(values)
    assert len(points) <= 254  # the two halves may share points
    for gap in range(9):
        inside = points[(points > gap + 0.1) & (points < gap + 0.9)]
        assert len(inside) == 1 and abs(inside[0] - (gap + 0.5)) < 0.01


def test_importance_goes_to_the_only_dim_the_target_reads():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 3))
    model = HistBooster(categorical=False, seed=0).fit(z, np.sin(2 * z[:, 1]))
    r = importances(model, 3)
    assert r.sum() == pytest.approx(1.0)
    assert r[1] > 0.99


def test_unknown_estimator_is_refused_with_the_valid_names():
    z = np.random.default_rng(0).normal(size=(20, 2))
    f = {"slant": np.arange(20.0)}
    with pytest.raises(ValueError, match="unknown DCI estimator 'xgboost'; valid: "
                       "hist_gradient_boosting, gradient_boosting"):  # fmt: skip
        dci(z, f, z, f, estimator="xgboost")


# ---------------------------------------------------------------- fast vs reference, same codes


def codes(rng, n: int, mix: np.ndarray) -> tuple[np.ndarray, dict]:
    """A code [n, 3] = (digit, thickness, slant) standardised, times ``mix``, plus noise."""
    f = {"digit": rng.integers(0, 10, n), "thickness": rng.uniform(1, 4, n),
         "slant": rng.normal(0, 0.3, n)}  # fmt: skip
    v = np.column_stack([f["digit"] / 2.9, (f["thickness"] - 2.5) / 0.87, f["slant"] / 0.3])
    return v @ mix + 0.05 * rng.normal(size=(n, 3)), f


@pytest.mark.parametrize("kind", ["disentangled", "entangled"])
def test_fast_dci_matches_gradient_boosting_on_the_same_codes(kind):
    """Tolerances (README, metric section): disentanglement and completeness within 0.03,
    informativeness within 0.03, the dim most important for each factor the same."""
    mix = np.eye(3) if kind == "disentangled" else np.array(
        [[1.0, 0.5, 0.2], [0.4, 1.0, 0.5], [0.3, 0.2, 1.0]]
    )  # fmt: skip
    rng = np.random.default_rng(2)
    (zf, ff), (zt, ft) = codes(rng, 600, mix), codes(rng, 600, mix)
    fast, reference = dci(zf, ff, zt, ft), dci(zf, ff, zt, ft, estimator="gradient_boosting")
    for key in ("disentanglement", "completeness", "informativeness"):
        assert fast[key] == pytest.approx(reference[key], abs=0.03), key
    top = [np.argmax(np.array(s["importance"]), axis=0).tolist() for s in (fast, reference)]
    assert top[0] == top[1]
    if kind == "disentangled":
        assert fast["disentanglement"] > 0.9 and top[0] == [0, 1, 2]


# ---------------------------------------------------------------- the final evaluation's passes


def bars(n: int, seed: int) -> Split:
    """32x32 images whose brightness and left-right balance are the two measured factors."""
    g = torch.Generator().manual_seed(seed)
    bright, balance = 0.25 + 0.5 * torch.rand(n, generator=g), 0.4 * torch.rand(n, generator=g)
    images = torch.zeros(n, 1, 32, 32)
    images[:, 0, 4:28, 4:16] = (bright + balance / 2)[:, None, None]
    images[:, 0, 4:28, 16:28] = (bright - balance / 2)[:, None, None]
    labels = torch.arange(n) % 10
    return Split(images, labels, {"thickness": bright, "slant": balance})


def test_final_evaluation_encodes_fit_images_once_and_decodes_only_the_test_split(monkeypatch):
    """Fit codes from the encoder alone, test codes and posterior maps from the shared pass:
    encoder on 300 test + 200 fit images (before: 300 + 200 + 300 + 300), decoder on the 300
    test images and the traversals, 2 groups x 9 steps x 10 images (before: 300 + 200 + 300 +
    180); the metrics equal each task's own passes'."""
    monkeypatch.setattr("acc.tasks.traversal_specificity.IMAGES", 10)
    recipe = GradientGatingL3()
    p = recipe.Params(width="small", seeds=[0])
    data = Dataset("bars", "32", bars(200, 0), bars(300, 1))
    torch.manual_seed(0)
    model = recipe.build_model(p)
    tasks = [
        t for t in recipe.tasks(p, data) if t.name in ("digit", "disentanglement", "traversal")
    ]
    seen = {"encode": 0, "decode": 0}
    for name in seen:
        original = getattr(model, name)

        def counted(x, _original=original, _name=name):
            seen[_name] += len(x)
            return _original(x)

        setattr(model, name, counted)
    together = evaluate_tasks(model, tasks)
    assert seen == {"encode": 300 + 200, "decode": 300 + 2 * 9 * 10}
    alone = {}
    for task in tasks:
        alone |= task.evaluate(model)
    assert together.keys() == alone.keys()
    for key, value in together.items():
        assert value == pytest.approx(alone[key], rel=1e-9, abs=1e-12), key


def test_tasks_read_the_shared_pass_when_one_is_open():
    recipe = GradientGatingL3()
    p = recipe.Params(width="small", seeds=[0])
    data = Dataset("bars", "32", bars(50, 0), bars(60, 1))
    model = recipe.build_model(p)
    task = DisentanglementTask("d", data, model.groups)
    traversal = TraversalSpecificityTask("t", data, model.groups)
    with shared_test_pass(model, [task, traversal]):
        shared_codes, shared_maps = task.test_codes(model), traversal.maps(model)
    assert np.array_equal(shared_codes, task.codes(model, data.test))
    assert torch.allclose(shared_maps, traversal.maps(model), atol=1e-6)
    assert shared_maps.shape == (60, 20, 8, 8)


def test_the_factor_slot_models_test_pass_runs_250_images_at_a_time():
    """Its decoder's maps of 1,000 images overflow the CPU caches (twice the time per image);
    other models keep EVAL_BATCH."""
    recipe = GradientGatingL3()
    model = recipe.build_model(recipe.Params(width="small", seeds=[0]))
    data = Dataset("bars", "32", bars(10, 0), bars(600, 1))
    assert [len(b) for b in batches_of(model, data)] == [250, 250, 100]
    data = Dataset("bars", "32", bars(10, 0), bars(2500, 1))
    assert [len(b) for b in batches_of(torch.nn.Identity(), data)] == [1000, 1000, 500]
