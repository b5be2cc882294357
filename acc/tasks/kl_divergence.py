"""KLDivergenceTask: the VAE's KL term against N(0, I), and the latent metrics it implies.

Normalisation (so that ``weight = beta`` means what it means in a beta-VAE): the training loss
is KL(q(z|x) || N(0, I)) summed over latent dimensions, averaged over the images of the batch.
Pair it with ``ReconstructionTask(..., reduction="sum")``, whose loss is the error summed over
each image's pixels and averaged over images; the total is then, per image,
``sum_pixels recon_error + beta * sum_dims KL``, the usual beta-VAE objective (with an L1
error, a Laplace likelihood of scale 1). Mixing it with the per-pixel mean reconstruction would
weight the KL about 1024 times more strongly on 32x32 images than the same beta suggests.
``reduction="mean"`` averages the KL over the latent dimensions instead (the summed loss / D,
still averaged over images): the upstream experiment's normalisation, meant to go with a
per-pixel mean reconstruction, so that beta does not depend on the latent's size. Only the
training loss changes; the metrics below are the same either way.

Evaluation (test split, eval mode): ``kl`` = mean over images of the summed KL,
``kl_per_dim`` = mean KL of each latent dimension (a list), ``active_units`` = dims whose
posterior mean varies over the data, Var_x(mu) > 0.01 (Burda et al. 2015).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.loss_health import LossThresholds
from acc.metrics import active_units, kl_per_dim
from acc.model_output import ModelOutput
from acc.tasks.base import Task, require_output

REDUCTIONS = ("sum", "mean")  # over latent dimensions; always the mean over images
# Per latent dimension (reduction "mean"): a dimension carrying thousands of nats is blowing up,
# tens is far more than any MNIST code needs, and under 1e-4 (0.1 nats over ~1,000 dims) the
# whole posterior has collapsed onto the prior.
PER_DIM_THRESHOLDS = {"diverged_above": 1e3, "suspicious_above": 10.0, "suspicious_below": 1e-4}


class KLDivergenceTask(Task):
    """Works with any model that outputs MU and LOGVAR. ``weight`` is beta.

    ``reduction``: "sum" over latent dimensions (the beta-VAE scale) or "mean" over them.
    ``warmup_steps`` > 0 ramps the KL weight linearly from beta/warmup_steps to beta over the
    first ``warmup_steps`` training steps (KL annealing, against early posterior collapse).
    The ramp reads the trainer's step (``Task.step``), so a resumed branch continues it
    where it stopped; during warm-up the loss it reports is the scaled one.
    """

    reads_outputs: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        weight: float = 1.0,
        warmup_steps: int = 0,
        groups: tuple = (),
        reduction: str = "sum",
    ) -> None:
        super().__init__(name, dataset, weight=weight)
        self.groups = tuple(groups)  # FactorGroups: kl[<group>] is reported per group
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"KL weight (beta) must be a finite number >= 0, got {weight}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown KL reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.warmup_steps, self.reduction = warmup_steps, reduction

    def warmup_factor(self) -> float:
        """The fraction of beta applied at the current step: 1 once warm-up is over."""
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (self.step + 1) / self.warmup_steps)

    def compute_loss(self, model_output, batch: torch.Tensor) -> torch.Tensor:
        mu = require_output(model_output, ModelOutput.MU, self)  # [B, D] or [B, C, H, W]
        logvar = require_output(model_output, ModelOutput.LOGVAR, self)
        per_dim = kl_per_dim(mu, logvar).flatten(1)  # [B, D]
        kl = (per_dim.sum(dim=1) if self.reduction == "sum" else per_dim.mean(dim=1)).mean()
        factor = self.warmup_factor()
        return kl if factor == 1.0 else factor * kl

    def evaluate(self, model: nn.Module) -> dict[str, float | list[float]]:
        """Per-position latents ([B, C, H, W], the factor-slot VAE) count per channel: KL
        summed over positions, activity of the channel's spatial mean."""
        mus, kls = [], []
        for _, output in self.test_outputs(model):
            mu = require_output(output, ModelOutput.MU, self).double()
            logvar = require_output(output, ModelOutput.LOGVAR, self).double()
            kl = kl_per_dim(mu, logvar)
            mus.append(mu.flatten(2).mean(dim=2) if mu.dim() > 2 else mu)  # [b, D]
            kls.append(kl.flatten(2).sum(dim=2) if kl.dim() > 2 else kl)  # [b, D]
        per_image_dim = torch.cat(kls)  # [N, D]
        metrics = {
            EvalMetric.KL.value: float(per_image_dim.sum(dim=1).mean()),
            EvalMetric.KL_PER_DIM.value: per_image_dim.mean(dim=0).tolist(),
            EvalMetric.ACTIVE_UNITS.value: float(active_units(torch.cat(mus))),
        }
        for group in self.groups:
            per_group = per_image_dim[:, group.start : group.end].sum(dim=1).mean()
            metrics[EvalMetric.KL.key(group.name)] = float(per_group)
        return metrics

    def loss_thresholds(self) -> LossThresholds:
        """In nats per image, summed over latent dims (before beta). Healthy MNIST VAEs carry
        tens of nats; thousands mean the encoder is blowing up; under 0.1 nats after warm-up the
        posterior has collapsed onto the prior and the latent carries nothing. Reduction "mean":
        nats per dimension (PER_DIM_THRESHOLDS)."""
        settle = max(200, self.warmup_steps)
        if self.reduction == "mean":
            return LossThresholds(**PER_DIM_THRESHOLDS, settle_steps=settle)
        return LossThresholds(
            diverged_above=1e5, suspicious_above=1e3, suspicious_below=0.1, settle_steps=settle
        )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "beta": self.weight,
            "warmup_steps": self.warmup_steps,
            "reduction": self.reduction,
        }
