"""LossHealth: a quick verdict on whether a task's training loss looks sane.

Thresholds are per task type. Evaluation-only tasks add no loss, so they are always healthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Health(str, Enum):
    HEALTHY = "healthy"
    SUSPICIOUS = "suspicious"
    DIVERGED = "diverged"


@dataclass(frozen=True)
class LossThresholds:
    suspicious_above: float  # a loss above this after warm-up suggests training is stuck
    diverged_above: float  # a loss above this (or non-finite) means training broke


THRESHOLDS: dict[str, LossThresholds] = {
    # Per-pixel L1 on [0, 1] images: a blank guess scores ~0.13 on MNIST.
    "ReconstructionTask": LossThresholds(suspicious_above=0.2, diverged_above=0.6),
    # KL in nats summed over latent dims, per image, before the beta weight.
    "KLDivergenceTask": LossThresholds(suspicious_above=500.0, diverged_above=1e5),
}


def classify(task_type: str, loss: float | None, eval_only: bool = False) -> Health:
    """Classify the latest training loss of a task of type ``task_type`` (its class name)."""
    if eval_only or loss is None:
        return Health.HEALTHY
    if not math.isfinite(loss):
        return Health.DIVERGED
    limits = THRESHOLDS.get(task_type)
    if limits is None:
        return Health.HEALTHY
    if loss > limits.diverged_above:
        return Health.DIVERGED
    if loss > limits.suspicious_above:
        return Health.SUSPICIOUS
    return Health.HEALTHY
