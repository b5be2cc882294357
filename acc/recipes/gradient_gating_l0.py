"""Level 0 (plan M-CGG-1 + M-CGG-2): does gating specialise a linear autoencoder's features?

Per seed: one initial model saved as the root checkpoint; the standard and the gated condition
both fork from it and see the same batches. Gating acts on ``encoder.0`` (the hidden layer's
pre-activation); sparsity and dead units are read after the ReLU (``encoder.1``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from acc.models import LinearAutoencoder
from acc.recipes.base import Recipe, RecipeContext, RecipeParams
from acc.stats import Hypothesis
from acc.tasks.activation_sparsity import ActivationSparsityTask
from acc.tasks.dead_units import DeadUnitsTask
from acc.tasks.effective_rank import EffectiveRankTask
from acc.tasks.reconstruction import ReconstructionTask
from acc.tasks.weight_diversity import WeightDiversityTask


class L0Params(RecipeParams):
    hidden_dim: int = Field(64, ge=2, description="hidden units of the linear autoencoder")
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the gate")
    gate_strength: float = Field(1.0, ge=0, le=1, description="0 = no gating, 1 = full mask")
    mode: Literal["batch", "sample"] = Field(
        "batch", description="gate strength per batch or per image"
    )


class GradientGatingL0(Recipe):
    name = "gradient_gating_l0"
    description = "Linear autoencoder on MNIST: standard vs competitive gradient gating"
    Params = L0Params
    conditions = {"standard": "plain training", "gated": "competitive gradient gating on encoder.0"}
    hypotheses = [
        Hypothesis("weight_cosine_sim", "lower"),
        Hypothesis("activation_sparsity", "lower"),
        Hypothesis("effective_rank", "higher"),
    ]

    def run(self, ctx: RecipeContext) -> None:
        p: L0Params = ctx.params
        mnist = ctx.load_dataset("mnist", view="flat")
        for seed in p.seeds:
            initial = ctx.create_model(lambda: LinearAutoencoder(784, p.hidden_dim), seed)
            root = ctx.save_checkpoint(initial, "init", seed=seed)
            for condition in self.conditions:
                with ctx.branch(condition, seed):
                    model = ctx.fork(root)
                    if condition == "gated":
                        ctx.attach_gating(
                            model,
                            p.temperature,
                            {"encoder.0": {"gate_strength": p.gate_strength, "mode": p.mode}},
                        )
                    ctx.attach_task(ReconstructionTask("reconstruction", mnist))
                    ctx.attach_task(WeightDiversityTask("weight_diversity", mnist, "encoder.0"))
                    ctx.attach_task(EffectiveRankTask("effective_rank", mnist, "encoder.0"))
                    ctx.attach_task(ActivationSparsityTask("sparsity", mnist, "encoder.1"))
                    ctx.attach_task(DeadUnitsTask("dead_units", mnist, "encoder.1"))
                    ctx.train(p.steps)
                    ctx.record_results(ctx.evaluate())
                    ctx.save_checkpoint(model, "final")
