"""The boosted trees behind DCI's importance matrix: which model, and its importances.

DESIGN.md's estimator is scikit-learn's GradientBoosting with default settings (100 stages of
depth-3 trees, learning rate 0.1; a classifier for digit grows 10 trees a stage). On level 3's
10,000 codes of 20 dims its digit classifier alone takes about a minute of CPU, most of a
branch's final evaluation. ``hist_gradient_boosting`` (the default) grows the same trees with
scikit-learn's HistGradientBoosting: the same depth, stages, learning rate and smallest leaf
(one image), no regularisation and no early stopping, on at most 254 split points per dim
(``split_points``) instead of every one. Its importance of dim j is what
GradientBoosting's ``feature_importances_`` is: the loss reduction of every split on j, summed
over all trees and normalised to sum 1. For the regressors that reduction is the same squared
error reduction; for the digit classifier HistGradientBoosting weighs each image by its Hessian
p(1 - p) (a second-order step), where GradientBoosting fits unweighted residuals. Both are
measured side by side (``bench/bench_l3_evaluation.py --compare-dci``, the README's metric
section) and ``gradient_boosting`` stays available to check any result.
"""

from __future__ import annotations

import numpy as np

ESTIMATORS = ("hist_gradient_boosting", "gradient_boosting")
# HistGradientBoosting set to GradientBoosting's default trees
SAME_TREES = {
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_depth": 3,
    "max_leaf_nodes": None,
    "min_samples_leaf": 1,
    "l2_regularization": 0.0,
    "early_stopping": False,
    "max_bins": 255,
}


def check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown DCI estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")


def fit_booster(estimator: str, categorical: bool, z: np.ndarray, y: np.ndarray, seed: int):
    """A fitted classifier (``categorical``) or regressor of ``y`` [N] on ``z`` [N, D], with
    ``predict(z)``."""
    check_estimator(estimator)
    if estimator == "gradient_boosting":
        from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

        kind = GradientBoostingClassifier if categorical else GradientBoostingRegressor
        return kind(random_state=seed).fit(z, y)
    return HistBooster(categorical, seed).fit(z, y)


def split_points(values: np.ndarray, most: int = 254) -> np.ndarray:
    """Where a tree may split one dim [N]: midpoints between consecutive distinct values, as
    GradientBoosting's, all of them when there are at most ``most``; else half at the
    values' quantiles (HistGradientBoosting's own rule) and half across the widest gaps, so a
    dim whose values fall in clusters (a digit slot) is still split between them."""
    distinct = np.unique(values)
    middle = (distinct[:-1] + distinct[1:]) / 2
    if len(middle) <= most:
        return middle
    quantiles = np.percentile(values, np.linspace(0, 100, most // 2 + 2)[1:-1], method="midpoint")
    widest = middle[np.argsort(np.diff(distinct), kind="stable")[-(most - most // 2) :]]
    return np.unique(np.concatenate([quantiles, widest]))


class HistBooster:
    """HistGradientBoosting with GradientBoosting's trees, on each dim replaced by the index
    of its bin between ``split_points`` (so its own binning keeps exactly those points).

    It runs on one OpenMP thread: a branch's evaluation shares the machine with other branches
    (``--workers``), where more threads spin and cost far more CPU than they save.
    """

    def __init__(self, categorical: bool, seed: int) -> None:
        self.categorical, self.seed = categorical, seed

    def fit(self, z: np.ndarray, y: np.ndarray) -> HistBooster:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        self.points = [split_points(z[:, j]) for j in range(z.shape[1])]
        kind = HistGradientBoostingClassifier if self.categorical else HistGradientBoostingRegressor
        with _one_thread():
            self.model = kind(random_state=self.seed, **SAME_TREES).fit(self.binned(z), y)
        return self

    def binned(self, z: np.ndarray) -> np.ndarray:
        """[N, D] bin indices; a value equal to a split point goes left, as in a tree."""
        columns = [np.searchsorted(p, z[:, j]) for j, p in enumerate(self.points)]
        return np.column_stack(columns).astype(np.float64)

    def predict(self, z: np.ndarray) -> np.ndarray:
        with _one_thread():
            return self.model.predict(self.binned(z))


def _one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def importances(model, dims: int) -> np.ndarray:
    """Each input dim's share of the loss reduction by all the model's splits: [dims], sum 1
    (all zeros when no tree split at all)."""
    if not isinstance(model, HistBooster):  # GradientBoosting
        return np.abs(np.asarray(model.feature_importances_, dtype=np.float64))
    total = np.zeros(dims)
    for stage in model.model._predictors:  # [stage][one tree per class]
        for tree in stage:
            nodes = tree.nodes[tree.nodes["is_leaf"] == 0]
            np.add.at(total, nodes["feature_idx"].astype(np.intp), nodes["gain"])
    return total / total.sum() if total.sum() > 0 else total
