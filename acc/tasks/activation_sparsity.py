"""ActivationSparsityTask: how many channels of a layer fire above the per-image mean."""

from __future__ import annotations

from torch import nn

from acc.eval_metric import EvalMetric
from acc.metrics import activation_sparsity, hoyer_sparsity
from acc.tasks.base import LayerTask


class ActivationSparsityTask(LayerTask):
    """Mean fraction of channels above each image's channel mean (lower = sparser), and the
    variance of that fraction over images (higher = images use different channel subsets).

    The fraction sits near 0.5 by construction, so the task also reports Hoyer's sparsity of
    the same activations (0 = all channels equal, 1 = one channel per image)."""

    reads_activations = True

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        activations = self.layer_activations(model)
        sparsity, variance = activation_sparsity(activations)
        return {
            self.key(EvalMetric.ACTIVATION_SPARSITY): sparsity,
            self.key(EvalMetric.SPARSITY_VARIANCE): variance,
            self.key(EvalMetric.HOYER_SPARSITY): hoyer_sparsity(activations),
        }
