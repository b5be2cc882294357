"""RegressionTask: a linear probe from some latent channels to one measured factor.

The factor (a Morpho-MNIST measurement such as thickness or slant) is standardised with the
train split's mean and std, so the loss is a plain MSE whatever the factor's units. It trains
with the model (at level 3 that gradient gives a slot its factor); evaluation reports the
probe's test R^2 on the posterior means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.loss_health import LossThresholds
from acc.tasks.base import TaskError
from acc.tasks.probe import ProbeTask


class RegressionTask(ProbeTask):
    """Linear probe from latent channels ``[start, end)`` to the standardised ``factor``."""

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        factor: str = "thickness",
        start: int = 0,
        end: int = 8,
        weight: float = 1.0,
        label: str | None = None,
    ) -> None:
        if factor not in dataset.train.factors or factor not in dataset.test.factors:
            raise TaskError(
                f"{type(self).__name__} {name!r} needs the measured factor {factor!r}; this "
                f"dataset has: {', '.join(dataset.train.factors) or 'no measured factors'}"
            )
        super().__init__(name, dataset, start, end, 1, weight, label or factor)
        self.factor = factor
        train = dataset.train.factors[factor].double()
        self.mean, self.std = float(train.mean()), float(train.std()) or 1.0

    def target(self, values: torch.Tensor) -> torch.Tensor:
        return ((values.double() - self.mean) / self.std).float()

    def compute_loss(self, model_output, batch: torch.Tensor) -> torch.Tensor:
        prediction = self.probe(self.latent(model_output)).squeeze(1)  # [B]
        values = self.dataset.train.factors[self.factor][self.indices]
        return F.mse_loss(prediction, self.target(values))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Test R^2 = 1 - SSE / SST of the standardised factor."""
        predictions = []
        with torch.no_grad():
            for _, output in self.test_outputs(model):
                predictions.append(self.probe(self.latent(output)).squeeze(1).double())
        truth = self.target(self.dataset.test.factors[self.factor]).double()
        residual = (torch.cat(predictions) - truth).pow(2).sum()
        total = (truth - truth.mean()).pow(2).sum()
        return {self.key(EvalMetric.PROBE_R2): float(1 - residual / total)}

    def loss_thresholds(self) -> LossThresholds:
        """MSE of a standardised target: predicting its mean scores 1."""
        return LossThresholds(diverged_above=100.0, suspicious_above=1.0)

    def describe(self) -> dict:
        return {**super().describe(), "factor": self.factor}
