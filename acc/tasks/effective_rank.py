"""EffectiveRankTask: how many directions a layer's weight matrix actually uses."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import effective_rank, effective_rank_normalized, weight_matrix
from acc.tasks.base import LayerTask


class EffectiveRankTask(LayerTask):
    """Roy & Vetterli (2007) effective rank of the (flattened) weight. Higher = more dims used.

    Also reported with every row scaled to unit norm first (``effective_rank_normalized``): a
    few rows with most of the weight norm lower the plain rank even when the rows point in
    many directions, and the pair tells norm disparity from direction diversity."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = weight_matrix(self.weight_of_layer(model))
        return {
            self.key(EvalMetric.EFFECTIVE_RANK): effective_rank(w),
            self.key(EvalMetric.EFFECTIVE_RANK_NORMALIZED): effective_rank_normalized(w),
        }
