"""Task: what a model is trained on and measured by.

A task reads the model's output dict, returns a loss from ``compute_loss`` and a dict of
metrics from ``evaluate``. Evaluation-only tasks are ordinary tasks that add no loss: the
Trainer leaves them out of the training sum and runs them at evaluation points.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import ClassVar

import torch
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.gradient_gating import layer_names
from acc.loss_health import LossThresholds
from acc.metrics import channel_activations
from acc.model_output import ModelOutput

EVAL_BATCH = 1000


class TaskError(ValueError):
    """A task that cannot run on this model (unknown layer, missing model output, ...)."""


class Task:
    """Base of every task. ``weight`` scales its loss; ``label`` tags per-layer metric keys.

    ``step`` is the trainer's step count when ``compute_loss`` runs (the Trainer sets it):
    a task whose loss follows a schedule reads it, so the schedule resumes with the trainer
    instead of depending on a counter of its own. ``indices`` are the batch's positions in the
    train split, for tasks with per-image targets (labels, measured factors)."""

    eval_only: ClassVar[bool] = False
    periodic: ClassVar[bool] = True  # False: too costly for periodic evaluation; final only
    reads_outputs: ClassVar[bool] = False  # evaluate() reads test_outputs (a shared pass)
    step: int = 0
    indices: torch.Tensor | None = None  # the batch's positions in the train split (Trainer)
    _shared_outputs: list | None = None  # set by shared_test_pass

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

    def test_outputs(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, dict]]:
        """The held-out test images in evaluation batches, each with the model's outputs on it
        (evaluation mode, no gradients): from the shared pass when one is open, else from a
        pass of its own. Tasks that read them set ``reads_outputs``."""
        if self._shared_outputs is not None:
            yield from self._shared_outputs
            return
        for batch in test_batches(model, self.dataset):
            yield batch, model(batch)

    def parameters(self) -> list[torch.Tensor]:
        """Weights the task itself learns (a probe's), trained by the model's optimizer."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def loss_thresholds(self) -> LossThresholds | None:
        """What a sane training loss of this task looks like, in its own units (LossHealth);
        None: no opinion (evaluation-only tasks add no loss)."""
        return None

    def describe(self) -> dict:
        info = {
            "type": type(self).__name__,
            "name": self.name,
            "weight": self.weight,
            "eval_only": self.eval_only,
        }
        if self.label is not None:
            info["label"] = self.label
        if (thresholds := self.loss_thresholds()) is not None:
            info["loss_thresholds"] = thresholds.to_dict()
        return info


class EvalOnlyTask(Task):
    """A measurement: no training signal, real work in ``evaluate``."""

    eval_only = True

    def compute_loss(self, model_output, batch) -> torch.Tensor:
        return torch.tensor(0.0)


class LayerTask(EvalOnlyTask):
    """An evaluation-only task that measures one named layer of the model.

    Subclasses that read the layer's activations (not just its weight) set
    ``reads_activations``, so that ``shared_layer_activations`` can feed them all from one
    pass over the test images."""

    reads_activations: ClassVar[bool] = False

    def __init__(
        self, name: str, dataset: Dataset, layer_name: str, label: str | None = None
    ) -> None:
        super().__init__(name, dataset, label=label)
        self.layer_name = layer_name
        self._shared_activations: torch.Tensor | None = None

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
        """The layer's output on every test image, [N, C] (spatially averaged for 4D): from
        the shared pass when one is open, else from a pass of its own."""
        if self._shared_activations is not None:
            return self._shared_activations
        return capture_activations(model, self.dataset, {self.layer_name: self.layer(model)})[
            self.layer_name
        ]

    def describe(self) -> dict:
        return {**super().describe(), "layer_name": self.layer_name}


@contextmanager
def shared_test_pass(model: nn.Module, tasks: Iterable[Task]) -> Iterator[None]:
    """One pass over the test images per dataset serves every task that reads a layer's
    activations or the model's outputs, instead of one pass per task (at level 2 the
    reconstruction, the KL and the four activation readers: six passes become one). Each task
    gets the numbers a pass of its own would give: the same batches, the same outputs. The
    outputs of the whole test split are held until the tasks are done."""
    tasks = list(tasks)
    layer_readers = [t for t in tasks if isinstance(t, LayerTask) and t.reads_activations]
    output_readers = [t for t in tasks if t.reads_outputs]
    by_dataset: dict[int, tuple[list[LayerTask], list[Task]]] = {}
    for task in layer_readers:
        by_dataset.setdefault(id(task.dataset), ([], []))[0].append(task)
    for task in output_readers:
        by_dataset.setdefault(id(task.dataset), ([], []))[1].append(task)
    try:
        for layer_group, output_group in by_dataset.values():
            if not layer_group and len(output_group) < 2:
                continue  # one reader alone: its own pass costs the same and holds nothing
            outputs: list[tuple[torch.Tensor, dict]] | None = [] if output_group else None
            layers = {t.layer_name: t.layer(model) for t in layer_group}
            dataset = (layer_group or output_group)[0].dataset
            activations = capture_activations(model, dataset, layers, outputs)
            for task in layer_group:
                task._shared_activations = activations[task.layer_name]
            for task in output_group:
                task._shared_outputs = outputs
        yield
    finally:
        for task in layer_readers:
            task._shared_activations = None
        for task in output_readers:
            task._shared_outputs = None


def capture_activations(
    model: nn.Module,
    dataset: Dataset,
    layers: dict[str, nn.Module],
    outputs: list[tuple[torch.Tensor, dict]] | None = None,
) -> dict[str, torch.Tensor]:
    """Each named layer's output on every test image, [N, C], from one pass over them;
    ``outputs``, when given, receives each batch with the model's outputs on it."""
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    hooks = [
        module.register_forward_hook(partial(_keep_channels, captured[name]))
        for name, module in layers.items()
    ]
    try:
        for batch in test_batches(model, dataset):
            output = model(batch)
            if outputs is not None:
                outputs.append((batch, output))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(parts) for name, parts in captured.items()}


def _keep_channels(into: list[torch.Tensor], _module, _inputs, output: torch.Tensor) -> None:
    into.append(channel_activations(output.detach()))


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
    model: nn.Module, dataset: Dataset, batch_size: int | None = None
) -> Iterator[torch.Tensor]:
    """The held-out test images in order, in evaluation mode, ``batch_size`` at a time
    (default: the model's ``eval_batch`` where it sets one, else EVAL_BATCH)."""
    batch_size = batch_size or getattr(model, "eval_batch", EVAL_BATCH)
    images = dataset.test.images
    with evaluation_mode(model):
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]


def require_factors(task_type: str, name: str, dataset: Dataset, factors) -> None:
    """A TaskError naming the measured factors a task needs that the dataset does not carry."""
    missing = [f for f in factors if f not in dataset.test.factors]
    if missing:
        raise TaskError(
            f"{task_type} {name!r} needs the measured factors {missing}; this dataset has: "
            f"{', '.join(dataset.test.factors) or 'no measured factors'}"
        )


def require_output(output: dict, key: ModelOutput, task: Task) -> torch.Tensor:
    """``output[key]``, or an error naming the task and the outputs the model does give."""
    if key not in output:
        raise TaskError(
            f"{type(task).__name__} {task.name!r} needs the model output "
            f"{key.value!r}; the model gives {', '.join(k.value for k in output)}"
        )
    return output[key]
