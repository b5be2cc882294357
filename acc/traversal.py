"""Latent traversals of a factor-slot model: move one factor group along its main direction
and decode, everything else held at the posterior mean.

DESIGN.md ("traversal_specificity"): the group's vector (its channels averaged over space) is
shifted along its first principal direction over the test set by t times the standard
deviation of the projection, t in 9 steps over [-2, 2], the same offset at every spatial
position of the group's channels. The same traversal makes the dashboard's pictures and the
number that says whether a slot moves only its own factor.
"""

from __future__ import annotations

import torch
from torch import nn

from acc.tasks.base import evaluation_mode

STEPS = torch.linspace(-2.0, 2.0, 9)


def posterior_maps(model: nn.Module, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """mu of every image, per position: [N, C, H, W] (eval mode, in batches)."""
    maps = []
    with evaluation_mode(model):
        for start in range(0, len(images), batch):
            mu, _ = model.encode(images[start : start + batch])
            maps.append(mu)
    return torch.cat(maps)


def principal_direction(vectors: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The first principal direction of ``vectors`` [N, d] (unit, sign fixed so its largest
    component is positive) and the standard deviation of the projections on it."""
    centred = vectors.double() - vectors.double().mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    direction = vh[0]
    if direction[direction.abs().argmax()] < 0:
        direction = -direction
    return direction.to(vectors.dtype), float((centred @ direction).std())


def traverse(
    model: nn.Module, maps: torch.Tensor, group, direction: torch.Tensor, std: float,
    steps: torch.Tensor = STEPS,
) -> torch.Tensor:  # fmt: skip
    """Decoded images [T, N, C, S, S] with ``group``'s channels shifted by t * std * direction
    (at every position) for each t in ``steps``; clamped to [0, 1]."""
    out = []
    with evaluation_mode(model):
        for t in steps.tolist():
            shifted = maps.clone()
            offset = (t * std * direction).to(maps)[None, :, None, None]  # [1, size, 1, 1]
            shifted[:, group.start : group.end] += offset
            out.append(model.decode(shifted).clamp(0.0, 1.0))
    return torch.stack(out)
