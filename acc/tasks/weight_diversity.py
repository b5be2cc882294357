"""WeightDiversityTask: mean pairwise cosine similarity of a layer's weight rows (or kernels)."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import mean_pairwise_cosine, weight_matrix
from acc.tasks.base import LayerTask


class WeightDiversityTask(LayerTask):
    """Lower = more diverse features. Conv2d kernels are flattened to [out, in*kh*kw]."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = weight_matrix(self.weight_of_layer(model))
        return {self.key(EvalMetric.WEIGHT_COSINE_SIM): mean_pairwise_cosine(w)}
