"""DeadUnitsTask: channels of a layer that are zero on every test image.

A ReLU unit that never fires keeps its near-random initial weights, which makes the weights
look more diverse than the features that are in use; report the count beside diversity.
"""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import dead_units
from acc.tasks.base import LayerTask


class DeadUnitsTask(LayerTask):
    reads_activations = True

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {self.key(EvalMetric.DEAD_UNITS): float(dead_units(self.layer_activations(model)))}
