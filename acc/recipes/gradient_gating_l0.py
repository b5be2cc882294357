"""Level 0 (plan M-CGG-1 + M-CGG-2): does gating specialise a linear autoencoder's features?

Two conditions, paired per seed (same initial weights, same batches): standard training and
competitive gradient gating on ``encoder.0`` (the hidden layer's pre-activation). Diversity,
rank (of the rows as they are and scaled to unit norm) and norm concentration are read from
``encoder.0``'s weight; sparsity (two measures) and dead units after the ReLU (``encoder.1``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from acc.data import Dataset
from acc.models import LinearAutoencoder
from acc.recipes.base import (
    GATING,
    Condition,
    Gating,
    Recipe,
    RecipeParams,
    Temperature,
    temperature_field,
    units_field,
)
from acc.stats import Hypothesis
from acc.tasks.activation_sparsity import ActivationSparsityTask
from acc.tasks.base import Task
from acc.tasks.dead_units import DeadUnitsTask
from acc.tasks.effective_rank import EffectiveRankTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask
from acc.tasks.weight_norm_concentration import WeightNormConcentrationTask


class L0Params(RecipeParams):
    hidden_dim: int = units_field(64, "hidden units of the linear autoencoder", ge=2)
    temperature: Temperature = temperature_field()
    gate_strength: float = Field(
        1.0, ge=0, le=1, description="0 = no gating, 1 = full mask", json_schema_extra=GATING
    )
    mode: Literal["batch", "sample"] = Field(
        "batch", description="gate strength per batch or per image", json_schema_extra=GATING
    )


class GradientGatingL0(Recipe):
    name = "gradient_gating_l0"
    description = "Linear autoencoder on MNIST: standard vs competitive gradient gating"
    Params = L0Params
    data_view = "flat"
    hypotheses = [
        Hypothesis("weight_cosine_sim", "lower"),
        Hypothesis("activation_sparsity", "lower"),
        Hypothesis("effective_rank", "higher"),
        Hypothesis("effective_rank_normalized", "higher"),
        Hypothesis("hoyer_sparsity", "higher"),
    ]

    def conditions(self, p: L0Params) -> list[Condition]:
        gate = {"encoder.0": {"gate_strength": p.gate_strength, "mode": p.mode}}
        return [
            Condition("standard", "plain training"),
            Condition(
                "gated",
                "competitive gradient gating on encoder.0",
                gating=Gating(p.temperature, gate),
            ),
        ]

    def build_model(self, p: L0Params, **overrides) -> LinearAutoencoder:
        return LinearAutoencoder(784, p.hidden_dim, **overrides)

    def tasks(self, p: L0Params, data: Dataset) -> list[Task]:
        return [
            ReconstructionTask("reconstruction", data),
            WeightDiversityTask("weight_diversity", data, "encoder.0"),
            EffectiveRankTask("effective_rank", data, "encoder.0"),
            WeightNormConcentrationTask("weight_norm", data, "encoder.0"),
            ActivationSparsityTask("sparsity", data, "encoder.1"),
            DeadUnitsTask("dead_units", data, "encoder.1"),
        ]
