"""The disentanglement metrics of DESIGN.md (level 3) as pure functions on numpy arrays.

Codes ``z`` are [N, D] float64 (posterior means of the pooled factor vectors); factors are a dict
``name -> [N]`` where ``"digit"`` is categorical (integer labels) and every other name is a
continuous measured Morpho-MNIST factor. A fitting split fits every regressor or probe; the scores
are on the test split. Natural logarithms throughout. Kept apart from tasks so each formula can be
checked on codes whose answers are known.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from joblib import Parallel, delayed

from acc.boosting_importance import check_estimator, fit_booster, importances

# scikit-learn is imported where it is used: importing it takes about as long as importing
# torch, and only level 3's final evaluation needs it, so every CLI command and branch worker
# that never computes these metrics starts that much sooner.

DIGIT = "digit"  # the one categorical factor; every other factor name is continuous
CHANCE = 0.1  # digit accuracy of a probe that knows nothing (10 balanced classes)

Factors = Mapping[str, np.ndarray]


# ---------------------------------------------------------------- input checks


def _codes(z: np.ndarray, name: str = "z") -> np.ndarray:
    """``z`` as a finite float64 [N, D] array with D >= 2 (a gap needs a second dimension)."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {z.shape}")
    if z.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 latent dims, got {z.shape[1]}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name} has non-finite values")
    return z


def _factors(factors: Factors, n: int, split: str = "test") -> dict[str, np.ndarray]:
    """Factors as float64 [n] arrays (digit as int64), each finite and not constant.

    A constant factor has entropy 0 (MIG divides by it) and no variance (R^2 and correlations are
    undefined), so it is refused rather than scored.
    """
    if not factors:
        raise ValueError("no factors given")
    out = {}
    for name, values in factors.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (n,):
            raise ValueError(
                f"factor {name!r} on the {split} split has shape {v.shape}, expected ({n},) "
                "(one value per code)"
            )
        if not np.isfinite(v).all():
            raise ValueError(f"factor {name!r} on the {split} split has non-finite values")
        if v.min() == v.max():
            raise ValueError(f"factor {name!r} is constant on the {split} split (entropy 0)")
        if name == DIGIT:
            if not np.array_equal(v, np.round(v)):
                raise ValueError(f"factor {DIGIT!r} must hold integer labels")
            v = v.astype(np.int64)
        out[name] = v
    return out


def _same_names(fit: Mapping, test: Mapping, what: str) -> None:
    if list(fit) != list(test):
        raise ValueError(f"{what} differ between splits: {list(fit)} vs {list(test)}")


# ---------------------------------------------------------------- MIG


def _entropy(labels: np.ndarray) -> float:
    """Entropy (nats) of discrete labels [N] from their empirical frequencies."""
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def _bin_equal_width(x: np.ndarray, bins: int) -> np.ndarray:
    """[N] values -> bin index in 0..bins-1, equal-width bins over the values' range."""
    edges = np.histogram_bin_edges(x, bins=bins)
    return np.digitize(x, edges[1:-1])


def _bin_quantile(x: np.ndarray, bins: int) -> np.ndarray:
    """[N] values -> bin index, ``bins`` quantile bins (about N / bins values each).

    Right-closed bins on the distinct interior edges, so a factor with many tied values (e.g. a
    mass of equal measurements) still lands in at least two bins when it is not constant.
    """
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    return np.digitize(x, edges, right=True)


def _discretise_factor(name: str, v: np.ndarray, bins: int) -> np.ndarray:
    return v if name == DIGIT else _bin_quantile(v, bins)


def mutual_information_matrix(z: np.ndarray, binned: Mapping[str, np.ndarray], bins: int):
    """MI (nats) between each equal-width-binned latent dim and each binned factor: [D, K]."""
    from sklearn.metrics import mutual_info_score

    zb = [_bin_equal_width(z[:, j], bins) for j in range(z.shape[1])]
    return np.array([[mutual_info_score(zj, v) for v in binned.values()] for zj in zb])


def mig(z_test: np.ndarray, factors: Factors, bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018) on the test split.

    z_test: [N, D] codes; factors: name -> [N]. Latent dims get ``bins`` equal-width bins over
    their test range, continuous factors ``bins`` quantile bins, digit its label. Per factor k:
    (largest - second largest MI(z_j; v_k) over j) / H(v_k); MIG is their mean. 1 = each factor
    lives in one dim alone; 0 = its two most informative dims share it equally (a duplicated
    dim scores 0 too, however informative: MIG's known blind spot).
    Returns {"mig": float, "per_factor": {name: float}}.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    z = _codes(z_test, "z_test")
    fs = _factors(factors, z.shape[0])
    binned = {name: _discretise_factor(name, v, bins) for name, v in fs.items()}
    mi = mutual_information_matrix(z, binned, bins)  # [D, K]
    top2 = -np.sort(-mi, axis=0)[:2]  # [2, K]: largest, second largest per factor
    per_factor = {
        name: float((top2[0, k] - top2[1, k]) / _entropy(binned[name]))
        for k, name in enumerate(binned)
    }
    return {"mig": float(np.mean(list(per_factor.values()))), "per_factor": per_factor}


# ---------------------------------------------------------------- DCI


def _normalised_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy with log base ``base`` of each row of non-negative weights [M, base] (0 log 0 = 0).

    A row of zeros (nothing to distribute) counts as uniform: entropy 1.
    """
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.full_like(p, 1.0 / base), where=total > 0)
    logs = np.log(q, out=np.zeros_like(q), where=q > 0)
    return -(q * logs).sum(axis=1) / np.log(base)


def dci_scores(importance: np.ndarray) -> dict:
    """Disentanglement and completeness (Eastwood & Williams 2018) of an importance matrix.

    importance: R [D, K] >= 0, R[j, k] = how much latent dim j matters for predicting factor k.
    D_j = 1 - H_K(R_j. / sum_k R_jk): 1 when dim j serves one factor, 0 when it serves all
    equally; D = sum_j rho_j D_j with rho_j = sum_k R_jk / sum R, so unused dims do not count.
    C_k = 1 - H_D(R_.k / sum_j R_jk): 1 when one dim carries factor k; C = mean over k.
    A dim (factor) with no importance at all counts as spread evenly: D_j (C_k) = 0.
    Returns {"disentanglement", "completeness", "per_dim_disentanglement" [D],
    "per_factor_completeness" [K]} (lists for the per-entry scores).
    """
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"importance must be [D, K] with D, K >= 2, got shape {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError("importance must be finite and non-negative")
    d_j = 1.0 - _normalised_entropy(r, r.shape[1])  # [D]
    c_k = 1.0 - _normalised_entropy(r.T, r.shape[0])  # [K]
    total = r.sum()
    rho = r.sum(axis=1) / total if total > 0 else np.zeros(r.shape[0])
    return {
        "disentanglement": float((rho * d_j).sum()),
        "completeness": float(c_k.mean()),
        "per_dim_disentanglement": d_j.tolist(),
        "per_factor_completeness": c_k.tolist(),
    }


def _score(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy for digit, R^2 for a continuous factor (unclipped: < 0 = worse than the mean)."""
    from sklearn.metrics import accuracy_score, r2_score

    if name == DIGIT:
        return float(accuracy_score(y_true, y_pred))
    return float(r2_score(y_true, y_pred))


def dci(
    z_fit: np.ndarray,
    factors_fit: Factors,
    z_test: np.ndarray,
    factors_test: Factors,
    random_state: int = 0,
    estimator: str = "hist_gradient_boosting",
) -> dict:
    """DCI (Eastwood & Williams 2018) with one boosted-tree model per factor.

    z_fit: [N1, D], z_test: [N2, D]; factors_*: name -> [N1] / [N2], the same names in both.
    Each model is fit on the fitting split; R[:, k] = its importances [D] (``estimator``: see
    ``acc.boosting_importance``; ``gradient_boosting`` is DESIGN.md's, the default grows the
    same trees on binned dims, ~40x faster); disentanglement and completeness come from
    ``dci_scores(R)``; informativeness is each model's test R^2 (continuous) or accuracy
    (digit), and their mean.
    Returns {"disentanglement", "completeness", "informativeness",
    "per_factor_informativeness": {name: float}, "importance": R [D][K] as nested lists}.
    """
    check_estimator(estimator)
    zf, zt = _codes(z_fit, "z_fit"), _codes(z_test, "z_test")
    if zf.shape[1] != zt.shape[1]:
        raise ValueError(f"z_fit has {zf.shape[1]} dims but z_test has {zt.shape[1]}")
    _same_names(factors_fit, factors_test, "factor names")
    ff = _factors(factors_fit, zf.shape[0], "fitting")
    ft = _factors(factors_test, zt.shape[0], "test")
    models = _fit_models(estimator, zf, ff, random_state)
    importance = np.zeros((zf.shape[1], len(ff)))
    informativeness = {}
    for k, (name, model) in enumerate(zip(ff, models)):
        importance[:, k] = importances(model, zf.shape[1])
        informativeness[name] = _score(name, ft[name], model.predict(zt))
    scores = dci_scores(importance)
    return {
        "disentanglement": scores["disentanglement"],
        "completeness": scores["completeness"],
        "informativeness": float(np.mean(list(informativeness.values()))),
        "per_factor_informativeness": informativeness,
        "importance": importance.tolist(),
    }


def _fit_models(estimator: str, zf: np.ndarray, ff: dict, random_state: int) -> list:
    """One model per factor. GradientBoosting's are fitted side by side (tree building
    releases the GIL, so threads run in parallel); HistGradientBoosting's one after the other,
    each on one thread (a second of CPU in all on level 3's codes)."""
    if estimator == "gradient_boosting":
        return Parallel(n_jobs=len(ff), prefer="threads")(
            delayed(fit_booster)(estimator, name == DIGIT, zf, ff[name], random_state)
            for name in ff
        )
    return [fit_booster(estimator, name == DIGIT, zf, ff[name], random_state) for name in ff]


# ---------------------------------------------------------------- SAP


def squared_correlations(z: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of each column of z [N, D] with v [N]: [D].

    A constant dim carries no information about anything: 0, not NaN.
    """
    zc = z - z.mean(axis=0)
    vc = v - v.mean()
    cov = zc.T @ vc  # [D], up to the common factor 1/N
    var = (zc**2).sum(axis=0) * (vc**2).sum()
    return np.divide(cov**2, var, out=np.zeros_like(cov), where=var > 0)


def sap(z_test: np.ndarray, factors: Factors) -> dict:
    """Separated attribute predictability (Kumar et al. 2018), continuous factors only.

    z_test: [N, D]; factors: name -> [N] (digit, being categorical, is skipped). Per continuous
    factor k: S[j, k] = corr(z_j, v_k)^2; score = largest - second largest over j. SAP = mean.
    1 = one dim predicts the factor linearly and no other does; 0 = two dims tie.
    Returns {"sap": float, "per_factor": {name: float}}.
    """
    z = _codes(z_test, "z_test")
    fs = _factors(factors, z.shape[0])
    continuous = {name: v for name, v in fs.items() if name != DIGIT}
    if not continuous:
        raise ValueError("sap needs at least one continuous factor (digit is skipped)")
    per_factor = {}
    for name, v in continuous.items():
        s = np.sort(squared_correlations(z, v))[::-1]
        per_factor[name] = float(s[0] - s[1])
    return {"sap": float(np.mean(list(per_factor.values()))), "per_factor": per_factor}


# ---------------------------------------------------------------- cross-probe matrix


def _check_groups(groups_fit: Mapping, groups_test: Mapping) -> dict[str, tuple]:
    """Each group's (fit [N1, d_g], test [N2, d_g]) float64 arrays, dims and names matching."""
    _same_names(groups_fit, groups_test, "group names")
    if len(groups_fit) < 2:
        raise ValueError("cross_probe needs at least 2 groups (leakage compares other groups)")
    out = {}
    for g in groups_fit:
        a, b = (np.asarray(x, dtype=np.float64) for x in (groups_fit[g], groups_test[g]))
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(
                f"group {g!r}: expected [N, d] on both splits, got {a.shape}, {b.shape}"
            )
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError(f"group {g!r} has non-finite values")
        out[g] = (a, b)
    n1, n2 = {a.shape[0] for a, _ in out.values()}, {b.shape[0] for _, b in out.values()}
    if len(n1) > 1 or len(n2) > 1:
        raise ValueError(f"groups have different lengths: fitting {sorted(n1)}, test {sorted(n2)}")
    return out


def _probe_score(name: str, x_fit, y_fit, x_test, y_test) -> float:
    """Linear probe's test score in [0, 1]: ridge R^2, or digit accuracy above chance.

    Inputs are standardised on the fitting split so both probes are well-conditioned whatever
    the scale of the group's vector; scores are clipped at 0 (worse than chance = no information).
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_fit)
    x_fit, x_test = scaler.transform(x_fit), scaler.transform(x_test)
    if name == DIGIT:
        model = LogisticRegression(max_iter=2000).fit(x_fit, y_fit)
        score = (accuracy_score(y_test, model.predict(x_test)) - CHANCE) / (1.0 - CHANCE)
    else:
        score = r2_score(y_test, Ridge().fit(x_fit, y_fit).predict(x_test))
    return float(np.clip(score, 0.0, 1.0))


def cross_probe(
    groups_fit: Mapping[str, np.ndarray],
    factors_fit: Factors,
    groups_test: Mapping[str, np.ndarray],
    factors_test: Factors,
    own: Mapping[str, str],
) -> dict:
    """Cross-probe matrix M[g, k]: how well group g's vector alone predicts factor k, linearly.

    groups_*: group name -> [N1, d_g] / [N2, d_g]; factors_*: name -> [N1] / [N2]; own: factor ->
    the group assigned to it. Unlike MIG and SAP this scores whole groups, so a slot that spreads
    its factor over several channels is not penalised.
    factor_informativeness = mean over owned factors k of M[own[k], k] (higher = each slot holds
    its factor); factor_leakage = mean over owned factors of max over other groups g of M[g, k]
    (lower = better isolation). Factors missing from ``own`` get a column but no summary.
    Returns {"matrix": {group: {factor: float}}, "factor_informativeness", "factor_leakage"}.
    """
    groups = _check_groups(groups_fit, groups_test)
    n1, n2 = (next(iter(groups.values()))[i].shape[0] for i in (0, 1))
    _same_names(factors_fit, factors_test, "factor names")
    ff, ft = _factors(factors_fit, n1, "fitting"), _factors(factors_test, n2, "test")
    _check_own(own, ff, groups)
    matrix = {
        g: {k: _probe_score(k, xf, ff[k], xt, ft[k]) for k in ff} for g, (xf, xt) in groups.items()
    }
    inform = [matrix[g][k] for k, g in own.items()]
    leak = [max(matrix[h][k] for h in groups if h != g) for k, g in own.items()]
    return {
        "matrix": matrix,
        "factor_informativeness": float(np.mean(inform)),
        "factor_leakage": float(np.mean(leak)),
    }


def _check_own(own: Mapping[str, str], factors: Mapping, groups: Mapping) -> None:
    if not own:
        raise ValueError("own is empty: assign at least one factor to its group")
    for factor, group in own.items():
        if factor not in factors:
            raise ValueError(f"own names unknown factor {factor!r}; factors: {list(factors)}")
        if group not in groups:
            raise ValueError(
                f"own maps {factor!r} to unknown group {group!r}; groups: {list(groups)}"
            )
