"""WeightNormConcentrationTask: how much of a layer's weight norm a few rows hold."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import weight_matrix, weight_norm_concentration
from acc.tasks.base import LayerTask


class WeightNormConcentrationTask(LayerTask):
    """Share of the squared weight norm in the largest 10% of rows (kernels): about 0.1 when
    rows are alike in norm, near 1 when a few "rich" units hold it all (the rich-get-richer
    outcome of strong gating)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = weight_matrix(self.weight_of_layer(model))
        return {self.key(EvalMetric.WEIGHT_NORM_CONCENTRATION): weight_norm_concentration(w)}
