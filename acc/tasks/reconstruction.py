"""ReconstructionTask: train on per-pixel L1 (or MSE); evaluate test-set L1 and PSNR.

The metrics score the reconstruction as an image, clamped to [0, 1] like the test images: a
model without an output sigmoid (the factor-slot VAE's ``output="linear"``) overshoots a
little, and an overshoot past white or black is not an error anyone sees. With a sigmoid the
clamp changes nothing.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.loss_health import LossThresholds
from acc.metrics import l1_and_mse
from acc.model_output import ModelOutput
from acc.tasks.base import Task, require_output

LOSSES = ("l1", "mse")
REDUCTIONS = ("mean", "sum")
# Per pixel, on images in [0, 1]. An untrained model (sigmoid outputs near 0.5) scores about
# 0.45 L1 / 0.2 MSE on MNIST and predicting all zeros about 0.13 / 0.1, so a loss above the
# first after 200 steps is stuck and one near the largest possible error (1) has diverged.
PER_PIXEL_THRESHOLDS = {
    "l1": LossThresholds(diverged_above=0.6, suspicious_above=0.2),
    "mse": LossThresholds(diverged_above=0.4, suspicious_above=0.1),
}


class ReconstructionTask(Task):
    """Reconstruct the input. ``loss`` is the training loss; evaluation always reports both metrics.

    ``reduction="mean"`` (the default) averages the error over every pixel of the batch.
    ``reduction="sum"`` sums it over each image's pixels and averages over images: the
    per-image scale a VAE needs, so that a KL term summed over latent dimensions per image
    (KLDivergenceTask) weighted by beta has its usual beta-VAE meaning.
    """

    reads_outputs: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        weight: float = 1.0,
        loss: str = "l1",
        reduction: str = "mean",
    ) -> None:
        super().__init__(name, dataset, weight=weight)
        if loss not in LOSSES:
            raise ValueError(f"unknown reconstruction loss {loss!r}; valid: {', '.join(LOSSES)}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self.loss, self.reduction = loss, reduction

    def compute_loss(self, model_output, batch: torch.Tensor) -> torch.Tensor:
        recon = require_output(model_output, ModelOutput.RECONSTRUCTION, self)
        loss_fn = F.l1_loss if self.loss == "l1" else F.mse_loss  # fused: fewer kernels per step
        if self.reduction == "sum":
            return loss_fn(recon, batch, reduction="sum") / batch.shape[0]  # per image, then mean
        return loss_fn(recon, batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        abs_sum = sq_sum = 0.0
        for batch, output in self.test_outputs(model):
            recon = require_output(output, ModelOutput.RECONSTRUCTION, self)
            a, s = l1_and_mse(recon.clamp(0.0, 1.0), batch)
            abs_sum, sq_sum = abs_sum + a, sq_sum + s
        n = self.dataset.test.images.numel()
        mse = float(sq_sum) / n
        psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")
        return {EvalMetric.L1.value: float(abs_sum) / n, EvalMetric.PSNR.value: psnr}

    def loss_thresholds(self) -> LossThresholds:
        per_pixel = PER_PIXEL_THRESHOLDS[self.loss]
        if self.reduction == "mean":
            return per_pixel
        return per_pixel.scaled(math.prod(self.dataset.input_shape))  # summed over each image

    def describe(self) -> dict:
        return {**super().describe(), "loss": self.loss, "reduction": self.reduction}
