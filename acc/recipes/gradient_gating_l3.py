"""Level 3 (plan M-CGG-6): does encoder gradient competition combined with architectural factor
isolation give better disentanglement than either alone?

The factor-slot VAE on 32x32 MNIST (slots: digit 8 channels, thickness 6, slant 6) in four
conditions, paired per seed (same root checkpoint, same batches, same noise):
standard; gated (depth-tapered competitive gating on the backbone's convolutions, 1.0 then
0.5); detach (``detach_factor_grad``: the decoder reads detached factor vectors, so the
reconstruction no longer shapes them); gated + detach (both).

Losses: reconstruction, KL (1,000-step warm-up), a linear digit probe on the digit slot and
linear probes of the measured thickness and slant (Morpho-MNIST) on their slots. How they are
weighted, and what detach detaches, is the ``config``:

- ``isolated`` (the default): L1 reconstruction summed per image, KL summed over the latent map
  with beta 0.1, probes weighted 20, an output sigmoid, and detach on the tokens *and* on each
  channel's spatial mean in the conv path. Each choice has a measured reason (README, Level 3):
  the probes isolate every factor in every condition, so the four conditions are compared on
  isolated slots. It stays the default because the published level-3 results used it.
- ``upstream``: the plan's "same as existing FactorSlotAutoencoder config", i.e. the upstream
  experiment (trainer_control_center, ``mnist_factor_experiment``): per-pixel mean squared
  error, KL averaged over latent dimensions with beta 0.5, probes weighted 1, no output
  sigmoid, and detach on the tokens only. Upstream also trains one task per step, drawn at
  random, and its thickness and slant probes see synthetic strokes; here every loss is summed
  every step on MNIST's measured factors, as in every level (README).

``beta`` and ``probe_weight`` given explicitly override the config's values; left out, they
take them, and the stored parameters show the values used.

Measured: the level 0-2 specialisation metrics of both convs, the probes' test scores, KL per
slot, and at the end MIG, DCI, SAP, the cross-probe leakage and the traversal specificity. The
schedule default is the plan's (28,110 steps of 64); ``width`` picks a smaller model for CPUs
(see the README for what each preset costs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from acc.data import Dataset
from acc.models import FactorSlotAutoencoder
from acc.models.factor_slot import DEFAULT_GROUPS, WIDTHS
from acc.recipes.base import Condition, Gating, Recipe, batch_field, steps_field
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


@dataclass(frozen=True)
class TrainingConfig:
    """How every condition's losses are weighted and what its model computes."""

    beta: float  # KL weight, on the KL reduced as kl_reduction says
    probe_weight: float  # loss weight of each factor probe
    reconstruction: tuple[str, str]  # ReconstructionTask (loss, reduction)
    kl_reduction: str  # KLDivergenceTask reduction over latent dimensions
    output: str  # FactorSlotAutoencoder output: sigmoid or linear
    detach_scope: str  # what the detach conditions detach


CONFIGS = {
    "isolated": TrainingConfig(0.1, 20.0, ("l1", "sum"), "sum", "sigmoid", "tokens_and_means"),
    "upstream": TrainingConfig(0.5, 1.0, ("mse", "mean"), "mean", "linear", "tokens"),
}


def _empty_is_unset(value):
    return None if value == "" else value  # an empty form field: the config's value


FromConfig = Annotated[float | None, BeforeValidator(_empty_is_unset)]


class L3Params(ConvGatingParams):
    steps: int = steps_field(28_110, "training steps per branch (plan: 3 epochs x 10 x 937)")
    batch_size: int = batch_field(64)
    eval_every: int = Field(2_000, ge=0, description="steps between periodic evaluations")
    width: Literal["full", "half", "small"] = Field(
        "full", description=f"channel widths: {', '.join(f'{k} x{v}' for k, v in WIDTHS.items())}"
    )
    config: Literal["isolated", "upstream"] = Field(
        "isolated",
        description="isolated: summed L1 + KL (beta 0.1), probes x20, sigmoid, detach tokens and "
        "means; upstream (the plan's): mean squared error + KL averaged over dims (beta 0.5), "
        "probes x1, no sigmoid, detach tokens only",
    )
    beta: FromConfig = Field(
        None, ge=0, description="KL weight (empty: the config's, 0.1 or 0.5)"
    )  # fmt: skip
    kl_warmup_steps: int = Field(1_000, ge=0, description="linear KL warm-up steps")
    probe_weight: FromConfig = Field(
        None,
        ge=0,
        description="loss weight of each factor probe (empty: the config's, 20 or 1; at 1 "
        "the summed reconstruction of config isolated drowns the digit probe)",
    )

    @model_validator(mode="after")
    def _config_defaults(self):
        """beta and probe_weight not given take the config's values (stored as used)."""
        chosen = CONFIGS[self.config]
        if self.beta is None:
            self.beta = chosen.beta
        if self.probe_weight is None:
            self.probe_weight = chosen.probe_weight
        return self


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
        detached = {
            "tokens_and_means": "detached factor vectors",
            "tokens": "factor vectors detached in its tokens (not in its conv path)",
        }[CONFIGS[p.config].detach_scope]
        return [
            Condition("standard", "plain factor-slot VAE training"),
            Condition("gated", gated, gating=gating),
            Condition("detach", f"decoder reads {detached}", model_overrides=detach),
            Condition("gated_detach", f"{gated}, and {detached}", gating, detach),
        ]

    def build_model(self, p: L3Params, **overrides) -> FactorSlotAutoencoder:
        chosen = CONFIGS[p.config]
        return FactorSlotAutoencoder(
            1, 32, DEFAULT_GROUPS, p.width, output=chosen.output,
            detach_scope=chosen.detach_scope, **overrides,
        )  # fmt: skip

    def tasks(self, p: L3Params, data: Dataset) -> list[Task]:
        digit, thickness, slant = GROUPS["digit"], GROUPS["thickness"], GROUPS["slant"]
        groups = tuple(GROUPS.values())
        chosen = CONFIGS[p.config]
        loss, reduction = chosen.reconstruction
        return [
            ReconstructionTask("reconstruction", data, loss=loss, reduction=reduction),
            KLDivergenceTask(
                "kl", data, p.beta, p.kl_warmup_steps, groups, reduction=chosen.kl_reduction
            ),  # fmt: skip
            ClassificationTask("digit", data, digit.start, digit.end, p.probe_weight, "digit"),
            RegressionTask(
                "thickness", data, "thickness", thickness.start, thickness.end, p.probe_weight
            ),  # fmt: skip
            RegressionTask("slant", data, "slant", slant.start, slant.end, p.probe_weight),
            *specialisation_tasks(data, BACKBONE_LAYERS),
            DisentanglementTask("disentanglement", data, groups),
            TraversalSpecificityTask("traversal", data, groups),
        ]
