"""ActivationSparsityTask: how many channels of a layer fire above the per-image mean."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import activation_sparsity
from acc.tasks.base import LayerTask


class ActivationSparsityTask(LayerTask):
    """Mean fraction of channels above each image's channel mean (lower = sparser), and the
    variance of that fraction over images (higher = images use different channel subsets)."""

    reads_activations = True

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        sparsity, variance = activation_sparsity(self.layer_activations(model))
        return {
            self.key(EvalMetric.ACTIVATION_SPARSITY): sparsity,
            self.key(EvalMetric.SPARSITY_VARIANCE): variance,
        }
