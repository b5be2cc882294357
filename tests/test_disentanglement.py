"""Disentanglement metrics on synthetic codes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from acc.disentanglement import cross_probe, dci, dci_scores, mig, sap

N_FIT, N_TEST = 2000, 1000
DCI_FIT = 500  # the gradient-boosting regressors fit on the first 500 (the test's cost)
CONTINUOUS = ("thickness", "slant", "width")


def make_factors(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Uniform continuous factors (so equal-width and quantile bins agree) and a digit label."""
    factors = {name: rng.uniform(0.0, 1.0, n) * (i + 1) for i, name in enumerate(CONTINUOUS)}
    factors["digit"] = rng.integers(0, 10, n)
    return factors


def standardised(factors: dict[str, np.ndarray]) -> np.ndarray:
    """[N, K] factor values, each column with mean 0 and standard deviation 1."""
    v = np.column_stack([np.asarray(x, dtype=np.float64) for x in factors.values()])
    return (v - v.mean(axis=0)) / v.std(axis=0)


def disentangled(rng, factors):
    """z_j = factor_j + tiny noise, the digit as one ordinal dim: [N, 4]."""
    v = standardised(factors)
    return v + 1e-3 * rng.normal(size=v.shape)


def entangled(rng, factors):
    """Every dim a random rotation of all four factors: [N, 4]."""
    q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(4, 4)))  # same mix on both splits
    return standardised(factors) @ q + 1e-3 * rng.normal(size=(len(factors["digit"]), 4))


def duplicated(rng, factors):
    """The disentangled code with thickness carried by two dims: [N, 5]."""
    z = disentangled(rng, factors)
    return np.column_stack([z[:, :1], z[:, :1] + 1e-3 * rng.normal(size=(len(z), 1)), z[:, 1:]])


def noise(rng, factors):
    """Codes independent of every factor: [N, 4]."""
    return rng.normal(size=(len(factors["digit"]), 4))


CODES = {"disentangled": disentangled, "entangled": entangled, "duplicated": duplicated}
CODES["noise"] = noise


@pytest.fixture(scope="module")
def splits():
    """Per code kind: (z_fit, factors_fit, z_test, factors_test)."""
    rng = np.random.default_rng(0)
    ff, ft = make_factors(rng, N_FIT), make_factors(rng, N_TEST)
    return {kind: (make(rng, ff), ff, make(rng, ft), ft) for kind, make in CODES.items()}


@pytest.fixture(scope="module")
def scores(splits):
    """MIG, SAP and DCI of every code kind, computed once."""
    return {
        kind: {"mig": mig(zt, ft), "sap": sap(zt, ft), "dci": dci(*_first(zf, ff), zt, ft)}
        for kind, (zf, ff, zt, ft) in splits.items()
    }


def _first(z, factors, n: int = DCI_FIT):
    return z[:n], {name: values[:n] for name, values in factors.items()}


# ---------------------------------------------------------------- known answers on synthetic codes


def test_disentangled_code_scores_near_one(scores):
    s = scores["disentangled"]
    assert s["mig"]["mig"] > 0.8
    # 20 x 20 bins on 1,000 images: MI's finite-sample bias and the equal-width (z) vs quantile
    # (factor) bin edges keep a continuous factor's gap near 0.8 even for a perfect code.
    assert min(s["mig"]["per_factor"].values()) > 0.7
    assert s["sap"]["sap"] > 0.95
    assert set(s["sap"]["per_factor"]) == set(CONTINUOUS)  # digit is not scored by SAP
    assert s["dci"]["disentanglement"] > 0.8
    assert s["dci"]["completeness"] > 0.8
    assert s["dci"]["informativeness"] > 0.95
    assert np.argmax(s["dci"]["importance"], axis=0).tolist() == [0, 1, 2, 3]


def test_entangled_code_scores_clearly_lower(scores):
    good, mixed = scores["disentangled"], scores["entangled"]
    assert mixed["mig"]["mig"] < good["mig"]["mig"] - 0.3
    assert mixed["sap"]["sap"] < good["sap"]["sap"] - 0.3
    assert mixed["dci"]["disentanglement"] < good["dci"]["disentanglement"] - 0.3
    assert mixed["dci"]["per_factor_informativeness"]["thickness"] > 0.8  # still informative


def test_duplicated_dim_zeroes_mig_but_not_informativeness(scores):
    s = scores["duplicated"]
    assert s["mig"]["per_factor"]["thickness"] < 0.05  # the top two MI tie
    assert s["mig"]["per_factor"]["slant"] > 0.8  # other factors unaffected
    assert s["sap"]["per_factor"]["thickness"] < 0.01
    assert s["dci"]["per_factor_informativeness"]["thickness"] > 0.95
    assert s["dci"]["informativeness"] > 0.95


def test_noise_code_scores_near_zero(scores):
    s = scores["noise"]
    assert s["mig"]["mig"] < 0.05
    assert s["sap"]["sap"] < 0.02
    info = s["dci"]["per_factor_informativeness"]
    assert max(info[name] for name in CONTINUOUS) <= 0.05
    assert info["digit"] < 0.2  # chance is 0.1


def one_hot_groups(rng, z, digit):
    """Groups of the disentangled code: one dim per continuous factor, a one-hot digit slot."""
    groups = {name: z[:, [j]] for j, name in enumerate(CONTINUOUS)}
    groups["digit"] = np.eye(10)[digit] + 0.01 * rng.normal(size=(len(digit), 10))
    return groups


def test_cross_probe_of_disentangled_groups_is_near_identity(splits):
    rng = np.random.default_rng(1)
    zf, ff, zt, ft = splits["disentangled"]
    gf, gt = one_hot_groups(rng, zf, ff["digit"]), one_hot_groups(rng, zt, ft["digit"])
    out = cross_probe(gf, ff, gt, ft, own={name: name for name in ff})
    m = np.array([[out["matrix"][g][k] for k in ff] for g in gf])
    assert np.abs(m - np.eye(4)).max() < 0.05
    assert out["factor_informativeness"] > 0.95
    assert out["factor_leakage"] < 0.05


def test_cross_probe_of_noise_groups_finds_nothing(splits):
    rng = np.random.default_rng(2)
    _, ff, _, ft = splits["noise"]
    gf = {g: rng.normal(size=(N_FIT, 3)) for g in ("a", "b")}
    gt = {g: rng.normal(size=(N_TEST, 3)) for g in ("a", "b")}
    out = cross_probe(gf, ff, gt, ft, own={"thickness": "a", "digit": "b"})
    assert out["factor_informativeness"] < 0.05
    assert out["factor_leakage"] < 0.05
    assert set(out["matrix"]["a"]) == set(ff)  # unowned factors still get a column


# ---------------------------------------------------------------- hand-checkable cases


def test_sap_with_exact_correlations():
    f = np.array([1.0, -1.0, 1.0, -1.0])
    g = np.array([1.0, 1.0, -1.0, -1.0])  # orthogonal to f and to the constant, same norm
    h = np.array([1.0, -1.0, -1.0, 1.0])  # orthogonal to both
    z = np.column_stack([f, f + g])  # corr(z_0, f) = 1, corr(z_1, f) = 1/sqrt(2)
    out = sap(z, {"thickness": f, "slant": h, "digit": np.array([0, 1, 2, 3])})
    assert out["per_factor"]["thickness"] == pytest.approx(1.0 - 0.5)
    assert out["per_factor"]["slant"] == pytest.approx(0.0)  # uncorrelated with both dims
    assert out["sap"] == pytest.approx(0.25)


def test_sap_constant_dim_counts_as_uncorrelated():
    f = np.array([1.0, 2.0, 3.0, 4.0])
    out = sap(np.column_stack([f, np.ones(4)]), {"thickness": f})
    assert out["sap"] == pytest.approx(1.0)


def test_dci_scores_of_identity_are_one():
    out = dci_scores(np.eye(3))
    assert out["disentanglement"] == pytest.approx(1.0)
    assert out["completeness"] == pytest.approx(1.0)


def test_dci_scores_row_spread_evenly_has_zero_disentanglement():
    r = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    out = dci_scores(r)
    assert out["per_dim_disentanglement"][0] == pytest.approx(0.0)
    assert out["disentanglement"] == pytest.approx(0.0)  # unused dims carry no weight
    assert out["completeness"] == pytest.approx(1.0)  # each factor lives in dim 0 alone


def test_dci_scores_mixed_by_hand():
    # Dim 0 serves factor 0 only (D_0 = 1), dim 1 both equally (D_1 = 0); rho = (1/3, 2/3).
    # Factor 0 is split evenly over both dims (C_0 = 0), factor 1 lives in dim 1 (C_1 = 1).
    out = dci_scores(np.array([[1.0, 0.0], [1.0, 1.0]]))
    assert out["per_dim_disentanglement"] == pytest.approx([1.0, 0.0])
    assert out["disentanglement"] == pytest.approx(1.0 / 3.0)
    assert out["per_factor_completeness"] == pytest.approx([0.0, 1.0])
    assert out["completeness"] == pytest.approx(0.5)


def test_dci_scores_entropy_uses_log_base_k():
    # Row (1/2, 1/4, 1/4): H = 1.5 bits = 1.5 log 2 nats; base 3 -> 1.5 log 2 / log 3.
    out = dci_scores(np.array([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert out["per_dim_disentanglement"][0] == pytest.approx(1.0 - 1.5 * np.log(2) / np.log(3))


def test_mig_scores_a_factor_with_many_tied_values():
    rng = np.random.default_rng(3)
    v = np.where(rng.uniform(size=1000) < 0.97, 0.0, rng.uniform(1.0, 2.0, 1000))
    out = mig(np.column_stack([v, rng.normal(size=1000)]), {"area": v})
    assert out["per_factor"]["area"] > 0.5  # two bins survive the ties


# ---------------------------------------------------------------- error messages


def test_mismatched_lengths_are_refused():
    z = np.zeros((10, 3))
    with pytest.raises(ValueError, match="factor 'slant' on the test split has shape"):
        mig(z, {"slant": np.arange(9.0)})
    with pytest.raises(ValueError, match="z_fit has 3 dims but z_test has 4"):
        dci(z, {"slant": np.arange(10.0)}, np.zeros((10, 4)), {"slant": np.arange(10.0)})
    with pytest.raises(ValueError, match="groups have different lengths"):
        groups = {"a": np.zeros((10, 2)), "b": np.zeros((9, 2))}
        cross_probe(groups, {"slant": np.arange(10.0)}, groups, {"slant": np.arange(10.0)}, {})


def test_fewer_than_two_latent_dims_are_refused():
    with pytest.raises(ValueError, match="z_test needs at least 2 latent dims, got 1"):
        sap(np.zeros((10, 1)), {"slant": np.arange(10.0)})
    with pytest.raises(ValueError, match=r"must be 2-D \[N, D\]"):
        mig(np.zeros(10), {"slant": np.arange(10.0)})


def test_constant_factor_is_refused():
    z = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="factor 'thickness' is constant on the test split"):
        mig(z, {"thickness": np.full(10, 2.5)})
    with pytest.raises(ValueError, match="factor 'digit' is constant on the fitting split"):
        dci(z, {"digit": np.zeros(10)}, z, {"digit": np.arange(10)})


def test_bad_factor_inputs_are_refused():
    z = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="'digit' must hold integer labels"):
        mig(z, {"digit": np.linspace(0, 1, 10)})
    with pytest.raises(ValueError, match="sap needs at least one continuous factor"):
        sap(z, {"digit": np.arange(10)})
    with pytest.raises(ValueError, match="non-finite"):
        sap(z, {"slant": np.r_[np.arange(9.0), np.nan]})
    with pytest.raises(ValueError, match="factor names differ between splits"):
        dci(z, {"slant": np.arange(10.0)}, z, {"width": np.arange(10.0)})


def test_own_mapping_must_name_known_groups_and_factors():
    rng = np.random.default_rng(0)
    groups = {"a": rng.normal(size=(20, 2)), "b": rng.normal(size=(20, 2))}
    factors = {"slant": rng.normal(size=20)}
    with pytest.raises(ValueError, match="own maps 'slant' to unknown group 'c'"):
        cross_probe(groups, factors, groups, factors, own={"slant": "c"})
    with pytest.raises(ValueError, match="own names unknown factor 'width'"):
        cross_probe(groups, factors, groups, factors, own={"width": "a"})
    with pytest.raises(ValueError, match="at least 2 groups"):
        cross_probe({"a": groups["a"]}, factors, {"a": groups["a"]}, factors, own={"slant": "a"})


def test_dci_scores_refuses_bad_importance():
    with pytest.raises(ValueError, match="D, K >= 2"):
        dci_scores(np.ones((3, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        dci_scores(-np.eye(2))
