"""The searches for an entropy target's T (acc/gate_entropy.py): each meets the target to its
stated tolerance on rows of every shape and scale, and they agree with one another."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import acc.gate_entropy as gate_entropy
from acc.gate_entropy import (
    WarmStart,
    probabilities_at_entropy,
    probabilities_at_entropy_grid,
    probabilities_at_entropy_one_row,
    probabilities_at_entropy_rows,
)


def entropy_of(p: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of each row, written out directly (float64)."""
    p = p.double()
    return -(torch.special.xlogy(p, p)).sum(-1) / math.log(p.shape[-1])


def strength_rows(channels: int, seed: int) -> torch.Tensor:
    """Rows of strengths as layers give them: even, skewed, heavy-tailed, one outlier, dead
    ReLU units, and values far from 0 for their spread; each at a scale from 1e-3 to 50."""
    rng = np.random.default_rng(seed)
    rows = [
        rng.random(channels),
        rng.exponential(size=channels),
        rng.lognormal(0.0, 1.5, size=channels),
        np.r_[1.0, 0.01 * rng.random(channels - 1)],
        np.maximum(rng.normal(size=channels), 0.0),
        100.0 + 0.1 * rng.random(channels),
    ]
    scales = 10.0 ** rng.uniform(-3.0, math.log10(50.0), size=len(rows))
    return torch.tensor(np.stack(rows) * scales[:, None], dtype=torch.float32)


@pytest.mark.parametrize("channels", [8, 64, 256])
@pytest.mark.parametrize("target", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_the_cpu_searches_meet_the_target_to_1e_4(channels, target):
    rows = strength_rows(channels, seed=channels)
    one_row = torch.stack([probabilities_at_entropy(row, target) for row in rows])
    many_rows = probabilities_at_entropy(rows, target)
    for p in (one_row, many_rows):
        assert p.dtype == torch.float32 and p.shape == rows.shape
        assert torch.allclose(p.sum(-1), torch.ones(len(rows)), atol=1e-5)
        assert (entropy_of(p) - target).abs().max() < 1e-4
    # both are softmax(strength / T) at nearly one T: the same masks
    assert (one_row - many_rows).abs().max() < 1e-3


def test_strengths_far_from_zero_are_shifted_before_the_softmax():
    """100 + 0.1 u: at the T that sets entropy 0.05, strength / T is so large that float32's
    rounding of it moves the entropy by 4e-4; the one-row search subtracts the largest
    strength first."""
    torch.manual_seed(0)
    strength = 100.0 + 0.1 * torch.rand(256)
    p = probabilities_at_entropy_one_row(strength, 0.05)
    assert abs(float(entropy_of(p)) - 0.05) < 1e-4


def test_the_grid_stays_within_its_interpolation_error():
    rows = strength_rows(64, seed=3)
    for target in (0.3, 0.8):
        p = probabilities_at_entropy_grid(rows, target)
        assert (entropy_of(p) - target).abs().max() < 0.005


def test_equal_strengths_and_ties_at_the_top_end_the_search():
    """No T changes a row of equal strengths (the uniform mask); with two strengths tied at
    the top the entropy cannot fall below log 2 / log C, and a lower target gets the mask
    nearest it (half on each); a row beside them still meets its target."""
    tied = [2.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.0, 0.0]
    rows = torch.tensor([[0.5] * 8, tied, [float(c) for c in range(8)]])
    masks = probabilities_at_entropy_rows(rows, 0.1)
    assert torch.allclose(masks[0], torch.full((8,), 1 / 8))
    assert float(entropy_of(masks[1])) == pytest.approx(math.log(2) / math.log(8), abs=1e-4)
    assert float(entropy_of(masks[2])) == pytest.approx(0.1, abs=1e-4)
    one_row = probabilities_at_entropy_one_row(torch.tensor(tied), 0.1)
    assert torch.allclose(one_row[:2], torch.full((2,), 0.5), atol=1e-4)


def test_which_search_runs(monkeypatch):
    """One row on the CPU: the Python search; many rows: numpy; anything else: the grid (the
    search a GPU runs, no host sync)."""
    calls = []
    for name in ("one_row", "rows", "grid"):
        real = getattr(gate_entropy, f"probabilities_at_entropy_{name}")
        monkeypatch.setattr(
            gate_entropy,
            f"probabilities_at_entropy_{name}",
            lambda *args, real=real, name=name: calls.append(name) or real(*args),
        )
    strength = torch.rand(4, 16)
    probabilities_at_entropy(strength[0], 0.5)
    probabilities_at_entropy(strength[:1], 0.5)
    probabilities_at_entropy(strength, 0.5)
    probabilities_at_entropy(strength.to(torch.bfloat16), 0.5)
    assert calls == ["one_row", "one_row", "rows", "grid"]


def test_a_warm_start_meets_the_target_and_resumes_exactly():
    """A layer's strengths drift from step to step; the search that starts from the last
    step's answer meets the target to 1e-4 at every step, agrees with a cold search, and a
    WarmStart restored from its state_dict searches on bit-identically."""
    rng = np.random.default_rng(5)
    base = rng.lognormal(0.0, 1.0, size=64)
    steps = [torch.tensor(base * (1 + 0.05 * k) + 0.02 * rng.random(64)) for k in range(12)]
    warm, masks, saved = WarmStart(), [], None
    for k, strength in enumerate(steps):
        if k == 6:
            saved = warm.state_dict()
        p = probabilities_at_entropy(strength.float(), 0.5, warm)
        cold = probabilities_at_entropy(strength.float(), 0.5)
        assert abs(float(entropy_of(p)) - 0.5) < 1e-4
        assert (p - cold).abs().max() < 1e-3
        masks.append(p)
    resumed = WarmStart()
    resumed.load_state_dict(saved)
    for k in range(6, 12):
        assert torch.equal(probabilities_at_entropy(steps[k].float(), 0.5, resumed), masks[k])
