"""Level 3 (plan M-CGG-6): does encoder gradient competition combined with architectural factor
isolation give better disentanglement than either alone?

The factor-slot VAE on 32x32 MNIST (slots: digit 8 channels, thickness 6, slant 6) in four
conditions, paired per seed (same root checkpoint, same batches, same noise):
standard; gated (depth-tapered competitive gating on the backbone's convolutions, 1.0 then
0.5); detach (``detach_factor_grad``: the decoder reads detached factor vectors, so only the
probes and the KL shape the slots); gated + detach (both).

Losses: reconstruction (summed per image), KL (beta, 1,000-step warm-up), a linear digit probe
on the digit slot and linear probes of the measured thickness and slant (Morpho-MNIST) on
their slots. Measured: the level 0-2 specialisation metrics of both convs, the probes' test
scores, KL per slot, and at the end MIG, DCI, SAP, the cross-probe leakage and the traversal
specificity. The schedule default is the plan's (28,110 steps of 64); ``width`` picks a
smaller model for CPUs (see the README for what each preset costs).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from acc.data import Dataset
from acc.models import FactorSlotAutoencoder
from acc.models.factor_slot import DEFAULT_GROUPS, WIDTHS
from acc.recipes.base import Condition, Gating, Recipe
from acc.recipes.gradient_gating_l1 import (
    ConvGatingParams,
    encoder_gating,
    specialisation_tasks,
)
from acc.stats import Hypothesis
from acc.tasks.base import Task
from acc.tasks.classification import ClassificationTask
from acc.tasks.disentanglement import DisentanglementTask
from acc.tasks.kl_divergence import KLDivergenceTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.regression import RegressionTask
from acc.tasks.traversal_specificity import TraversalSpecificityTask

GROUPS = {g.name: g for g in DEFAULT_GROUPS}
BACKBONE_LAYERS = {
    "conv1": ("backbone.conv1", "backbone.relu1"),
    "conv2": ("backbone.conv2", "backbone.relu2"),
}
BACKBONE_LABELS = {conv: label for label, (conv, _) in BACKBONE_LAYERS.items()}
INTERVENTIONS = ("gated", "detach", "gated_detach")
HEADLINE = (
    ("mig", "higher"),
    ("dci_disentanglement", "higher"),
    ("factor_leakage", "lower"),
    ("traversal_specificity", "higher"),
)
PROBES = (
    ("probe_accuracy[digit]", "higher"),
    ("probe_r2[thickness]", "higher"),
    ("probe_r2[slant]", "higher"),
)


class L3Params(ConvGatingParams):
    steps: int = Field(
        28_110, ge=0, description="training steps per branch (plan: 3 epochs x 10 x 937)"
    )
    batch_size: int = Field(64, ge=1, description="images per training step")
    eval_every: int = Field(2_000, ge=0, description="steps between periodic evaluations")
    width: Literal["full", "half", "small"] = Field(
        "full", description=f"channel widths: {', '.join(f'{k} x{v}' for k, v in WIDTHS.items())}"
    )
    beta: float = Field(0.1, ge=0, description="KL weight (per-image sums over the latent map)")
    kl_warmup_steps: int = Field(1_000, ge=0, description="linear KL warm-up steps")
    probe_weight: float = Field(
        20.0,
        ge=0,
        description="loss weight of each factor probe (20: at 1 the summed reconstruction "
        "drowns the digit probe and the digit slot collapses)",
    )


def hypotheses() -> list[Hypothesis]:
    """Each intervention against standard; gating + detach against each alone."""
    rows = [
        Hypothesis(
            metric,
            expect,
            treatment=condition,
            control="standard",
            name=f"{metric}: {condition} vs standard",
        )  # fmt: skip
        for condition in INTERVENTIONS
        for metric, expect in (*HEADLINE, *PROBES)
    ]
    rows += [
        Hypothesis(
            metric,
            expect,
            treatment="gated_detach",
            control=single,
            name=f"{metric}: gated_detach vs {single}",
        )  # fmt: skip
        for single in ("gated", "detach")
        for metric, expect in HEADLINE
    ]
    return rows


class GradientGatingL3(Recipe):
    name = "gradient_gating_l3"
    description = (
        "Factor-slot VAE on 32x32 MNIST: standard, gating, detach and gating + detach, "
        "with measured factors, disentanglement scores and traversals"
    )
    Params = L3Params
    data_view = "32"
    measured_factors = ("thickness", "slant")
    hypotheses = hypotheses()

    def conditions(self, p: L3Params) -> list[Condition]:
        gating = Gating(
            p.temperature,
            encoder_gating(p.gate_conv1, p.gate_conv2, p.mode, BACKBONE_LAYERS),
            labels=BACKBONE_LABELS,
        )
        gated = (
            f"competitive gradient gating on backbone.conv1 (strength {p.gate_conv1}) and "
            f"backbone.conv2 (strength {p.gate_conv2})"
        )
        detach = {"detach_factor_grad": True}
        return [
            Condition("standard", "plain factor-slot VAE training"),
            Condition("gated", gated, gating=gating),
            Condition("detach", "decoder reads detached factor vectors", model_overrides=detach),
            Condition("gated_detach", f"{gated}, and detached factor vectors", gating, detach),
        ]

    def build_model(self, p: L3Params, **overrides) -> FactorSlotAutoencoder:
        return FactorSlotAutoencoder(1, 32, DEFAULT_GROUPS, p.width, **overrides)

    def tasks(self, p: L3Params, data: Dataset) -> list[Task]:
        digit, thickness, slant = GROUPS["digit"], GROUPS["thickness"], GROUPS["slant"]
        groups = tuple(GROUPS.values())
        return [
            ReconstructionTask("reconstruction", data, reduction="sum"),
            KLDivergenceTask("kl", data, p.beta, p.kl_warmup_steps, groups),
            ClassificationTask("digit", data, digit.start, digit.end, p.probe_weight, "digit"),
            RegressionTask(
                "thickness", data, "thickness", thickness.start, thickness.end, p.probe_weight
            ),  # fmt: skip
            RegressionTask("slant", data, "slant", slant.start, slant.end, p.probe_weight),
            *specialisation_tasks(data, BACKBONE_LAYERS),
            DisentanglementTask("disentanglement", data, groups),
            TraversalSpecificityTask("traversal", data, groups),
        ]
