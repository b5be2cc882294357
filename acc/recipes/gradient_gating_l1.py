"""Level 1 (plan M-CGG-3): does gating specialise spatial features, and does depth matter?

A convolutional autoencoder on 32x32 MNIST, standard vs gated, paired per seed as at level 0
(same initial weights, same batches).
Gating is depth-tapered: ``encoder.conv1`` with gate strength 1.0, ``encoder.conv2`` with
0.5, on the convolutions' outputs (pre-activation, as at level 0). Kernel diversity and
effective rank are read from each conv's weight; sparsity and dead units from the ReLU
after it. Every per-layer metric is keyed ``"<metric>[conv1]"`` / ``"<metric>[conv2]"``.

The depth question gets its own row: per seed, (gated - standard) cosine similarity of conv1
minus that of conv2; below zero means the stronger gate lowered conv1's similarity more.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from acc.data import Dataset
from acc.models import ConvAutoencoder
from acc.models.conv_blocks import CONV_LAYERS
from acc.recipes.base import (
    GATING,
    Condition,
    Gating,
    Recipe,
    RecipeParams,
    Temperature,
    steps_field,
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

LABELS = tuple(CONV_LAYERS)  # ("conv1", "conv2")
GATED_LABELS = {conv: label for label, (conv, _) in CONV_LAYERS.items()}  # for gate_entropy[...]


class ConvGatingParams(RecipeParams):
    """The depth-tapered gate of levels 1 and 2: one temperature, a strength per conv."""

    temperature: Temperature = temperature_field()
    gate_conv1: float = Field(
        1.0, ge=0, le=1, description="gate strength on conv1 (near input)", json_schema_extra=GATING
    )
    gate_conv2: float = Field(
        0.5, ge=0, le=1, description="gate strength on conv2", json_schema_extra=GATING
    )
    mode: Literal["batch", "sample"] = Field(
        "batch", description="gate strength per batch or per image", json_schema_extra=GATING
    )


class L1Params(ConvGatingParams):
    steps: int = steps_field(5_000)
    hidden_dim: int = units_field(64, "latent size of the conv autoencoder")


def per_layer_hypotheses() -> list[Hypothesis]:
    """Level 0's hypotheses, once per conv layer."""
    return [
        Hypothesis(f"{metric}[{label}]", expect)
        for label in LABELS
        for metric, expect in (
            ("weight_cosine_sim", "lower"),
            ("activation_sparsity", "lower"),
            ("effective_rank", "higher"),
            ("effective_rank_normalized", "higher"),
            ("hoyer_sparsity", "higher"),
        )
    ]


DEPTH_HYPOTHESIS = Hypothesis(
    "weight_cosine_sim[conv1]",
    "lower",
    minus="weight_cosine_sim[conv2]",
    name="depth: weight_cosine_sim conv1 - conv2",
    statement="gating lowers conv1's cosine similarity more than conv2's",
)


def specialisation_tasks(data: Dataset, layers: dict = CONV_LAYERS) -> list[Task]:
    """Diversity, rank and norm concentration on each conv's weight; sparsity and dead units
    on the ReLU after it (``layers``: label -> (conv name, ReLU name))."""
    tasks: list[Task] = []
    for label, (conv, relu) in layers.items():
        tasks += [
            WeightDiversityTask(f"weight_diversity_{label}", data, conv, label=label),
            EffectiveRankTask(f"effective_rank_{label}", data, conv, label=label),
            WeightNormConcentrationTask(f"weight_norm_{label}", data, conv, label=label),
            ActivationSparsityTask(f"sparsity_{label}", data, relu, label=label),
            DeadUnitsTask(f"dead_units_{label}", data, relu, label=label),
        ]
    return tasks


def encoder_gating(
    conv1: float, conv2: float, mode: str, layers: dict = CONV_LAYERS
) -> dict[str, dict]:
    """The depth-tapered layer configs: stronger near the input, weaker near the latent."""
    return {
        layers["conv1"][0]: {"gate_strength": conv1, "mode": mode},
        layers["conv2"][0]: {"gate_strength": conv2, "mode": mode},
    }


GATED_DESCRIPTION = (
    "competitive gradient gating on encoder.conv1 (strength {conv1}) and "
    "encoder.conv2 (strength {conv2})"
)


class GradientGatingL1(Recipe):
    name = "gradient_gating_l1"
    description = (
        "Conv autoencoder on 32x32 MNIST: standard vs depth-tapered gating (conv1 1.0, conv2 0.5)"
    )
    Params = L1Params
    data_view = "32"
    hypotheses = [*per_layer_hypotheses(), DEPTH_HYPOTHESIS]

    def conditions(self, p: L1Params) -> list[Condition]:
        return [
            Condition("standard", "plain training"),
            Condition(
                "gated",
                GATED_DESCRIPTION.format(conv1=p.gate_conv1, conv2=p.gate_conv2),
                gating=Gating(
                    p.temperature,
                    encoder_gating(p.gate_conv1, p.gate_conv2, p.mode),
                    labels=GATED_LABELS,
                ),
            ),
        ]

    def build_model(self, p: L1Params, **overrides) -> ConvAutoencoder:
        return ConvAutoencoder(1, p.hidden_dim, 32, **overrides)

    def tasks(self, p: L1Params, data: Dataset) -> list[Task]:
        return [ReconstructionTask("reconstruction", data), *specialisation_tasks(data)]
