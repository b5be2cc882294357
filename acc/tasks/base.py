"""Task: what a model is trained on and measured by.

A task reads the model's output dict, returns a loss from ``compute_loss`` and a dict of
metrics from ``evaluate``. Evaluation-only tasks are ordinary tasks that add no loss: the
Trainer leaves them out of the training sum and runs them at evaluation points.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.gradient_gating import layer_names
from acc.metrics import channel_activations
from acc.model_output import ModelOutput

EVAL_BATCH = 1000


class TaskError(ValueError):
    """A task that cannot run on this model (unknown layer, missing model output, ...)."""


class Task:
    """Base of every task. ``weight`` scales its loss; ``label`` tags per-layer metric keys."""

    eval_only: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        weight: float = 1.0,
        latent_slice: slice | None = None,
        label: str | None = None,
    ) -> None:
        self.name, self.dataset, self.weight = name, dataset, weight
        self.latent_slice, self.label = latent_slice, label

    def _get_latent(self, model_output: dict[ModelOutput, torch.Tensor]) -> torch.Tensor:
        latent = require_output(model_output, ModelOutput.LATENT, self)
        return latent if self.latent_slice is None else latent[..., self.latent_slice]

    def compute_loss(
        self, model_output: dict[ModelOutput, torch.Tensor], batch: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float | list[float]]:
        raise NotImplementedError

    def key(self, metric: EvalMetric) -> str:
        return metric.key(self.label)

    def describe(self) -> dict:
        info = {
            "type": type(self).__name__,
            "name": self.name,
            "weight": self.weight,
            "eval_only": self.eval_only,
        }
        if self.label is not None:
            info["label"] = self.label
        return info


class EvalOnlyTask(Task):
    """A measurement: no training signal, real work in ``evaluate``."""

    eval_only = True

    def compute_loss(self, model_output, batch) -> torch.Tensor:
        return torch.tensor(0.0)


class LayerTask(EvalOnlyTask):
    """An evaluation-only task that measures one named layer of the model."""

    def __init__(
        self, name: str, dataset: Dataset, layer_name: str, label: str | None = None
    ) -> None:
        super().__init__(name, dataset, label=label)
        self.layer_name = layer_name

    def layer(self, model: nn.Module) -> nn.Module:
        modules = dict(model.named_modules())
        if not self.layer_name or self.layer_name not in modules:
            raise TaskError(
                f"{type(self).__name__} {self.name!r}: unknown layer "
                f"{self.layer_name!r}; this model's layers: "
                f"{', '.join(layer_names(model))}"
            )
        return modules[self.layer_name]

    def weight_of_layer(self, model: nn.Module) -> torch.Tensor:
        weight = getattr(self.layer(model), "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            raise TaskError(
                f"{type(self).__name__} {self.name!r}: layer {self.layer_name!r} "
                "has no weight matrix (use a Linear or Conv layer)"
            )
        return weight

    def layer_activations(self, model: nn.Module) -> torch.Tensor:
        """The layer's output on every test image, [N, C] (spatially averaged for 4D)."""
        captured: list[torch.Tensor] = []
        hook = self.layer(model).register_forward_hook(
            lambda _m, _i, out: captured.append(channel_activations(out.detach()))
        )
        try:
            for batch in test_batches(model, self.dataset):
                model(batch)
        finally:
            hook.remove()
        return torch.cat(captured)

    def describe(self) -> dict:
        return {**super().describe(), "layer_name": self.layer_name}


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """eval() + no_grad for the duration, then the model's previous mode back."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def test_batches(
    model: nn.Module, dataset: Dataset, batch_size: int = EVAL_BATCH
) -> Iterator[torch.Tensor]:
    """The held-out test images in order, in evaluation mode."""
    images = dataset.test.images
    with evaluation_mode(model):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]


def require_output(output: dict, key: ModelOutput, task: Task) -> torch.Tensor:
    """``output[key]``, or an error naming the task and the outputs the model does give."""
    if key not in output:
        raise TaskError(
            f"{type(task).__name__} {task.name!r} needs the model output "
            f"{key.value!r}; the model gives {', '.join(k.value for k in output)}"
        )
    return output[key]
