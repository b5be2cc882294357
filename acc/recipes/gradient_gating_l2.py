"""Level 2 (plan M-CGG-4): does gating get along with the KL term, and does it keep latents alive?

A convolutional VAE on 32x32 MNIST (latent 16, beta 0.05), standard vs gated, paired per seed
as at levels 0 and 1. Gating acts on the encoder convolutions only (conv1 1.0, conv2 0.5): it
is about encoder specialisation, so the mu/logvar heads, the sampling step and the decoder are
never gated. Every condition of a seed draws the same reparameterisation noise (each branch
seeds the global RNG with its seed).

Loss per image: reconstruction error summed over pixels + beta * KL summed over latent dims
(see KLDivergenceTask), so beta = 0.05 has its usual beta-VAE meaning.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from acc.data import Dataset
from acc.models import ConvVAE
from acc.recipes.base import Condition, Gating, Recipe, steps_field, units_field
from acc.recipes.gradient_gating_l1 import (
    DEPTH_HYPOTHESIS,
    GATED_DESCRIPTION,
    GATED_LABELS,
    ConvGatingParams,
    encoder_gating,
    per_layer_hypotheses,
    specialisation_tasks,
)
from acc.stats import Hypothesis
from acc.tasks.base import Task
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask


class L2Params(ConvGatingParams):
    steps: int = steps_field(10_000)
    latent_dim: int = units_field(16, "latent dimensions of the VAE")
    beta: float = Field(0.05, ge=0, description="KL weight (per-image sums, see KLDivergenceTask)")
    kl_warmup_steps: int = Field(0, ge=0, description="linear KL warm-up steps (0 = off)")
    recon_loss: Literal["l1", "mse"] = Field(
        "l1", description="reconstruction error, summed over pixels"
    )


class GradientGatingL2(Recipe):
    name = "gradient_gating_l2"
    description = (
        "Conv VAE on 32x32 MNIST (beta 0.05): standard vs gating on the encoder convolutions"
    )
    Params = L2Params
    data_view = "32"
    hypotheses = [*per_layer_hypotheses(), DEPTH_HYPOTHESIS, Hypothesis("active_units", "higher")]

    def conditions(self, p: L2Params) -> list[Condition]:
        gated = GATED_DESCRIPTION.format(conv1=p.gate_conv1, conv2=p.gate_conv2)
        return [
            Condition("standard", "plain VAE training"),
            Condition(
                "gated",
                f"{gated}; decoder never gated",
                gating=Gating(
                    p.temperature,
                    encoder_gating(p.gate_conv1, p.gate_conv2, p.mode),
                    labels=GATED_LABELS,
                ),
            ),
        ]

    def build_model(self, p: L2Params, **overrides) -> ConvVAE:
        return ConvVAE(1, p.latent_dim, 32, **overrides)

    def tasks(self, p: L2Params, data: Dataset) -> list[Task]:
        return [
            ReconstructionTask("reconstruction", data, loss=p.recon_loss, reduction="sum"),
            KLDivergenceTask("kl", data, weight=p.beta, warmup_steps=p.kl_warmup_steps),
            *specialisation_tasks(data),
        ]
