"""EffectiveRankTask: how many directions a layer's weight matrix actually uses."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import effective_rank, weight_matrix
from acc.tasks.base import LayerTask


class EffectiveRankTask(LayerTask):
    """Roy & Vetterli (2007) effective rank of the (flattened) weight. Higher = more dims used."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = weight_matrix(self.weight_of_layer(model))
        return {self.key(EvalMetric.EFFECTIVE_RANK): effective_rank(w)}
