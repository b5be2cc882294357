"""The metric formulas of DESIGN.md as pure tensor functions (tasks apply them to models).

Kept apart from tasks so each formula can be checked on hand-made inputs with known answers.
"""

from __future__ import annotations

import math

import torch


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A layer's weight as [out, fan_in]: Linear rows as they are, conv kernels flattened."""
    if weight.dim() < 2:
        raise ValueError(f"expected a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    return weight.detach().reshape(weight.shape[0], -1).double()


def mean_pairwise_cosine(w: torch.Tensor) -> float:
    """Mean of cos(w_i, w_j) over all ordered pairs i != j of the rows of ``w``."""
    n = w.shape[0]
    if n < 2:
        raise ValueError("cosine similarity needs at least two rows")
    unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T  # [n, n]
    return float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))


def effective_rank(w: torch.Tensor) -> float:
    """Roy & Vetterli (2007): exp of the entropy of the singular values normalised by their sum."""
    s = torch.linalg.svdvals(w.double())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]  # 0 log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def effective_rank_normalized(w: torch.Tensor) -> float:
    """``effective_rank`` of ``w`` with every row scaled to unit L2 norm first (rows of norm
    < 1e-12 dropped): the diversity of the rows' directions, whatever their norms."""
    w = w.double()
    norms = w.norm(dim=1)
    keep = norms >= 1e-12
    if not keep.any():
        return 0.0
    return effective_rank(w[keep] / norms[keep, None])


def weight_norm_concentration(w: torch.Tensor, top: float = 0.1) -> float:
    """Share of the squared row norms held by the largest ceil(top * rows) rows: ``top``
    (about 0.1) when every row has the same norm, 1 when a few rows hold everything."""
    squared = w.double().pow(2).sum(dim=1).sort(descending=True).values
    total = squared.sum()
    if total <= 0:
        return 0.0
    k = math.ceil(top * squared.numel())
    return float(squared[:k].sum() / total)


def hoyer_sparsity(a: torch.Tensor) -> float:
    """Hoyer (2004) sparsity of |activations| over channels, per image, averaged over the
    images whose vector is not all zero: 0 when every channel is equal, 1 when one fires."""
    a = channel_activations(a).double().abs()
    c = a.shape[1]
    if c < 2:
        raise ValueError("Hoyer sparsity needs at least two channels")
    l1, l2 = a.sum(dim=1), a.norm(dim=1)
    alive = l2 > 0
    if not alive.any():
        return 0.0
    root = math.sqrt(c)
    return float(((root - l1[alive] / l2[alive]) / (root - 1)).mean())


def channel_activations(a: torch.Tensor) -> torch.Tensor:
    """[N, C] activations: 4D outputs [N, C, H, W] are averaged over spatial positions."""
    return a.flatten(2).mean(dim=2) if a.dim() > 2 else a


def activation_sparsity(a: torch.Tensor) -> tuple[float, float]:
    """(mean_n f_n, population variance of f_n), f_n = fraction of channels above image n's mean."""
    a = channel_activations(a).double()
    above = (a > a.mean(dim=1, keepdim=True)).double().mean(dim=1)  # f_n, [N]
    return float(above.mean()), float(above.var(unbiased=False))


def dead_units(a: torch.Tensor) -> int:
    """Channels that are exactly zero on every image (a ReLU unit that never fires)."""
    return int((channel_activations(a) == 0).all(dim=0).sum())


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per image and latent dimension: [N, D]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """Burda et al. (2015): latent dims whose posterior mean varies over the data (Var > 0.01)."""
    return int((mu.double().var(dim=0, unbiased=False) > threshold).sum())


def l1_and_mse(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed |error| and squared error over a batch (float64), for exact test-set means."""
    diff = (x_hat - x).double()
    return diff.abs().sum(), diff.pow(2).sum()
