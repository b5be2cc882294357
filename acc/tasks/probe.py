"""ProbeTask: the shared part of the linear probes (ClassificationTask, RegressionTask).

A probe reads latent channels ``[start, end)`` (at level 3: one factor group's pooled vector),
owns a linear layer that trains with the model (``parameters()`` joins the model's optimizer;
``state_dict()`` joins the resume point), and gives its gradient to those channels.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from acc.data import Dataset
from acc.model_output import ModelOutput
from acc.tasks.base import Task, TaskError, require_output


class ProbeTask(Task):
    abstract: ClassVar[bool] = True  # not a task of its own: the registry skips it
    reads_outputs: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        start: int,
        end: int,
        outputs: int,
        weight: float = 1.0,
        label: str | None = None,
    ) -> None:
        if not 0 <= start < end:
            raise ValueError(f"a probe reads latent channels [start, end), got [{start}, {end})")
        super().__init__(name, dataset, weight=weight, latent_slice=slice(start, end), label=label)
        device = dataset.train.images.device
        self.probe = nn.Linear(end - start, outputs).to(device)  # drawn from the global RNG

    def latent(self, output: dict) -> torch.Tensor:
        """The probed channels of the model's pooled latent: [B, end - start]."""
        z = require_output(output, ModelOutput.LATENT, self)
        if z.shape[1] < self.latent_slice.stop:
            raise TaskError(
                f"{type(self).__name__} {self.name!r} reads latent channels "
                f"[{self.latent_slice.start}, {self.latent_slice.stop}) of a "
                f"{z.shape[1]}-channel latent"
            )
        return z[:, self.latent_slice]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.probe.parameters())

    def state_dict(self) -> dict:
        return self.probe.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.probe.load_state_dict(state)

    def describe(self) -> dict:
        s = self.latent_slice
        return {**super().describe(), "channels": [s.start, s.stop]}
