"""LossHealth: a quick verdict on whether a training task's loss looks sane.

Every training task states its own ``LossThresholds`` (``Task.loss_thresholds()``), in the
units of the loss it returns: a per-pixel mean and a per-image sum of the same error differ by
the number of pixels, so no table of thresholds per task *type* could be right for both.
Evaluation-only tasks add no loss and have no thresholds: they are always healthy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum


class Health(str, Enum):
    HEALTHY = "healthy"
    SUSPICIOUS = "suspicious"
    DIVERGED = "diverged"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LossThresholds:
    """``diverged_above``: a loss this high (or NaN/inf) means training broke, at any step.
    ``suspicious_above`` / ``suspicious_below``: once ``settle_steps`` have passed, a loss
    outside these suggests training is stuck (or, for a KL term, that the posterior has
    collapsed onto the prior)."""

    diverged_above: float
    suspicious_above: float
    suspicious_below: float | None = None
    settle_steps: int = 200

    def scaled(self, factor: float) -> LossThresholds:
        """The same thresholds for a loss ``factor`` times larger (e.g. summed over pixels)."""
        below = None if self.suspicious_below is None else self.suspicious_below * factor
        return LossThresholds(
            self.diverged_above * factor, self.suspicious_above * factor, below, self.settle_steps
        )

    def to_dict(self) -> dict:
        return asdict(self)


def classify(thresholds: LossThresholds | None, loss: float | None, step: int) -> Health:
    """The health of one loss value reported at training step ``step``."""
    if loss is None:
        return Health.HEALTHY
    if not math.isfinite(loss):
        return Health.DIVERGED
    if thresholds is None:
        return Health.HEALTHY
    if loss > thresholds.diverged_above:
        return Health.DIVERGED
    if step < thresholds.settle_steps:
        return Health.HEALTHY
    below = thresholds.suspicious_below
    if loss > thresholds.suspicious_above or (below is not None and loss < below):
        return Health.SUSPICIOUS
    return Health.HEALTHY


def assess(tasks: Iterable, losses: dict[str, float], step: int) -> dict[str, Health]:
    """Health of every training task that reported a loss: ``{task name: Health}``."""
    return {
        task.name: classify(task.loss_thresholds(), losses[task.name], step)
        for task in tasks
        if not task.eval_only and task.name in losses
    }
