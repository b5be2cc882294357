"""Metric formulas on inputs whose answers are known by hand."""

from __future__ import annotations

import math

import pytest
import torch

from acc.metrics import (
    activation_sparsity,
    active_units,
    dead_units,
    effective_rank,
    effective_rank_normalized,
    hoyer_sparsity,
    kl_per_dim,
    mean_pairwise_cosine,
    weight_matrix,
    weight_norm_concentration,
)


def test_orthogonal_rows_cosine_zero_and_full_rank():
    w = torch.eye(8) * torch.arange(1, 9).unsqueeze(1)  # orthogonal rows of different norms
    assert mean_pairwise_cosine(w) == pytest.approx(0.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    assert mean_pairwise_cosine(q) == pytest.approx(0.0, abs=1e-12)
    assert effective_rank(q) == pytest.approx(16.0, abs=1e-9)  # all singular values 1


def test_identical_rows_cosine_one_and_rank_one():
    w = weight_matrix(torch.tensor([0.3, -1.2, 2.0, 0.5]).repeat(6, 1))
    assert mean_pairwise_cosine(w) == pytest.approx(1.0, abs=1e-12)
    assert effective_rank(w) == pytest.approx(1.0, abs=1e-9)


def test_opposite_pairs_average_out():
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert mean_pairwise_cosine(w) == pytest.approx(-1.0)
    # rows [1,0], [0,1], [1,1]/sqrt2: ordered-pair cosines 0, 0, s, s, s, s with s = 1/sqrt2
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert mean_pairwise_cosine(w) == pytest.approx(4 / math.sqrt(2) / 6)


def test_effective_rank_of_known_spectrum():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    w = u @ torch.diag(s) @ v.T
    p = s / s.sum()  # Roy & Vetterli: normalise by the sum of singular values, not squares
    want = math.exp(-float((p * p.log()).sum()))
    assert effective_rank(w) == pytest.approx(want, rel=1e-9)
    assert effective_rank(torch.zeros(3, 3)) == 0.0


def test_conv_kernels_are_flattened():
    weight = torch.zeros(3, 2, 3, 3)
    weight[0, 0, 0, 0] = 1.0
    weight[1, 1, 2, 2] = 2.0
    weight[2, 0, 0, 0] = 5.0  # same direction as kernel 0
    w = weight_matrix(weight)
    assert w.shape == (3, 18)
    assert mean_pairwise_cosine(w) == pytest.approx(2 / 6)  # one parallel pair, both orders
    s = torch.tensor([math.sqrt(26.0), 2.0], dtype=torch.float64)
    p = s / s.sum()
    assert effective_rank(w) == pytest.approx(math.exp(-float((p * p.log()).sum())), rel=1e-9)


def test_activation_sparsity_on_hand_made_matrix():
    a = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],  # mean .25 -> 1 of 4 above
            [1.0, 1.0, 0.0, 0.0],  # mean .5  -> 2 of 4
            [3.0, 1.0, 1.0, 1.0],
        ]
    )  # mean 1.5 -> 1 of 4
    sparsity, variance = activation_sparsity(a)
    f = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    assert sparsity == pytest.approx(float(f.mean()))
    assert variance == pytest.approx(float(f.var(unbiased=False)))  # population variance


def test_activation_sparsity_averages_4d_over_space():
    a = torch.zeros(2, 4, 2, 2)
    a[0, 0] = 4.0  # image 0: channel means [4, 0, 0, 0] -> 1/4 above
    a[1, :2, 0, 0] = 4.0  # image 1: channel means [1, 1, 0, 0] -> 2/4 above
    sparsity, variance = activation_sparsity(a)
    assert sparsity == pytest.approx(0.375)
    assert variance == pytest.approx(0.015625)


def test_dead_units_counts_channels_zero_everywhere():
    a = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_units(a) == 1
    assert dead_units(torch.zeros(5, 3, 2, 2)) == 3


def test_kl_per_dim_and_active_units_known_values():
    mu = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    kl = kl_per_dim(mu, logvar)
    assert kl[:, 0].tolist() == [0.0, 0.0]  # the prior itself
    assert kl[0, 1].item() == pytest.approx(0.5 * (1 + 2 - 1 - math.log(2)))
    assert active_units(mu) == 1  # dim 1 varies (var 1), dim 0 does not
    assert active_units(mu * 0.05) == 0  # var 0.0025 < 0.01


def test_normalised_rank_ignores_norm_disparity():
    w = torch.tensor([[3.0, 0.0], [0.0, 0.001]])  # orthogonal rows, very different norms
    assert effective_rank(w) < 1.01
    assert effective_rank_normalized(w) == pytest.approx(2.0, abs=1e-12)
    assert effective_rank_normalized(torch.tensor([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(1.0)
    assert effective_rank_normalized(torch.zeros(3, 4)) == 0.0


def test_weight_norm_concentration_known_cases():
    assert weight_norm_concentration(torch.ones(10, 3)) == pytest.approx(0.1)  # even: 1 of 10
    assert weight_norm_concentration(torch.ones(20, 3)) == pytest.approx(0.1)  # 2 of 20
    one = torch.zeros(10, 3)
    one[4] = 7.0
    assert weight_norm_concentration(one) == pytest.approx(1.0)  # one row holds everything
    w = torch.tensor([[2.0], [1.0], [1.0], [0.0]])  # squared 4, 1, 1, 0: top ceil(0.4) = 1 row
    assert weight_norm_concentration(w) == pytest.approx(4 / 6)


def test_hoyer_sparsity_known_cases():
    assert hoyer_sparsity(torch.tensor([[0.0, 0.0, 5.0, 0.0]])) == pytest.approx(1.0)
    assert hoyer_sparsity(torch.tensor([[2.0, 2.0, 2.0, 2.0]])) == pytest.approx(0.0)
    expected = (math.sqrt(2) - 7 / 5) / (math.sqrt(2) - 1)  # |[-3, 4]|: l1 7, l2 5
    assert hoyer_sparsity(torch.tensor([[-3.0, 4.0]])) == pytest.approx(expected)
    mixed = torch.tensor([[0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert hoyer_sparsity(mixed) == pytest.approx(0.5)  # the all-zero image is left out
    spatial = torch.zeros(1, 4, 2, 2)
    spatial[0, 1] = 3.0  # 4D outputs are averaged over space first
    assert hoyer_sparsity(spatial) == pytest.approx(1.0)
