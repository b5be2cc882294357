"""ClassificationTask: a linear probe from some latent channels to the digit label.

It trains with the model (its cross-entropy is part of the loss, weighted by ``weight``): at
level 3 that gradient is what makes the digit slot carry the digit. Evaluation reports the
probe's test accuracy on the posterior means (eval mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.loss_health import LossThresholds
from acc.tasks.probe import ProbeTask

CLASSES = 10


class ClassificationTask(ProbeTask):
    """Linear probe from latent channels ``[start, end)`` to the label (10 classes)."""

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        start: int = 0,
        end: int = 8,
        weight: float = 1.0,
        label: str | None = None,
    ) -> None:
        super().__init__(name, dataset, start, end, CLASSES, weight, label)

    def compute_loss(self, model_output, batch: torch.Tensor) -> torch.Tensor:
        logits = self.probe(self.latent(model_output))  # [B, 10]
        return F.cross_entropy(logits, self.dataset.train.labels[self.indices])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        labels, correct, seen = self.dataset.test.labels, 0, 0
        with torch.no_grad():
            for batch, output in self.test_outputs(model):
                predicted = self.probe(self.latent(output)).argmax(dim=1)
                correct += int((predicted == labels[seen : seen + len(batch)]).sum())
                seen += len(batch)
        return {self.key(EvalMetric.PROBE_ACCURACY): correct / seen}

    def loss_thresholds(self) -> LossThresholds:
        """Cross-entropy in nats: guessing among 10 classes scores ln 10 = 2.3."""
        return LossThresholds(diverged_above=20.0, suspicious_above=2.2)
