"""TraversalSpecificityTask: does moving a slot move only its own factor?

For each group assigned to a measured factor (thickness, slant): 100 fixed test images, the
group's vector moved along its first principal direction (t = -2..2 standard deviations, 9
steps, see ``acc.traversal``), decoded, cropped to the centre 28x28 and measured with the
Morpho-MNIST measurements. r[g, f] = mean over images of |slope of f (standardised by the
test split's std) against t|; specificity of g = r[g, own] / sum_f r[g, f]; reported: the
mean over groups (1 = each slot moves only its factor; 1/F = no specificity). Final only.
The posterior maps come from the final evaluation's shared pass over the test images (MU).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from acc.data import Dataset
from acc.eval_metric import EvalMetric
from acc.factors import dataset_images_uint8, measure
from acc.model_output import ModelOutput
from acc.tasks.base import EvalOnlyTask, TaskError, require_factors, require_output
from acc.traversal import STEPS, posterior_maps, principal_direction, traverse

IMAGES = 100


class TraversalSpecificityTask(EvalOnlyTask):
    periodic: ClassVar[bool] = False
    reads_outputs: ClassVar[bool] = True  # the posterior maps: MU of the shared pass

    def __init__(
        self, name: str, dataset: Dataset, groups: tuple = (),
        factors: tuple[str, ...] = ("thickness", "slant"), workers: int = 1,
    ) -> None:  # fmt: skip
        super().__init__(name, dataset)
        require_factors(type(self).__name__, name, dataset, factors)
        self.groups, self.factors, self.workers = tuple(groups), tuple(factors), workers

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        # the model's own groups when none were given (the inspector on a level-3 checkpoint)
        groups = [g for g in self.groups or getattr(model, "groups", ()) if g.name in self.factors]
        if not hasattr(model, "decode") or not groups:
            raise TaskError(
                f"TraversalSpecificityTask {self.name!r} needs a factor-slot model (encode, "
                "decode) and factor groups named after measured factors"
            )
        maps = self.maps(model)  # [N, C, H, W]
        pooled = maps.mean(dim=(2, 3))  # [N, C]
        std = {f: float(self.dataset.test.factors[f].double().std()) for f in self.factors}
        specificity = []
        for group in groups:
            direction, spread = principal_direction(pooled[:, group.start : group.end])
            decoded = traverse(model, maps[:IMAGES], group, direction, spread)  # [T, n, ...]
            slopes = self.slopes(decoded, std)  # factor -> mean |slope|
            specificity.append(slopes[group.name] / max(sum(slopes.values()), 1e-12))
        return {EvalMetric.TRAVERSAL_SPECIFICITY.value: float(np.mean(specificity))}

    def maps(self, model: nn.Module) -> torch.Tensor:
        """The posterior means of every test image, per position: [N, C, H, W], from the
        shared pass's outputs when one is open."""
        if self._shared_outputs is None:
            return posterior_maps(model, self.dataset.test.images)
        return torch.cat(
            [require_output(out, ModelOutput.MU, self) for _, out in self.test_outputs(model)]
        )

    def slopes(self, decoded: torch.Tensor, std: dict[str, float]) -> dict[str, float]:
        """Mean over images of |d factor / d t| (factor in units of its test-set std)."""
        steps, n = decoded.shape[:2]
        measured = measure(dataset_images_uint8(decoded.flatten(0, 1).cpu()), self.workers)
        t = STEPS.double().numpy()
        t_centred = t - t.mean()
        out = {}
        for f in self.factors:
            values = measured[f].reshape(steps, n) / std[f]  # [T, n]
            slope = (t_centred[:, None] * (values - values.mean(axis=0))).sum(0) / (
                t_centred**2
            ).sum()
            out[f] = float(np.nanmean(np.abs(slope)))
        return out

    def describe(self) -> dict:
        return {**super().describe(), "factors": list(self.factors)}
