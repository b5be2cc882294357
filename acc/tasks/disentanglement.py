"""DisentanglementTask: MIG, DCI, SAP and the cross-probe matrix of a factor-slot model.

Evaluation only, at the end of training (fitting boosted trees and probes takes seconds, too
slow for every periodic evaluation). The code is the posterior means of the pooled factor
vectors (the model's LATENT in eval mode); regressors and probes are fitted on the first 10,000
training images and scored on the test split (DESIGN.md). Factors: the digit label and the
measured factors the dataset carries (thickness and slant at least).

The test codes come from the final evaluation's shared pass over the test images (the outputs
the probes and the reconstruction read); the fitting codes from the encoder alone where the
model has one (``encode`` and ``factor_vectors``, as the factor-slot model): the decoder's work
is four fifths of a full pass and LATENT does not need it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from acc.data import Dataset, Split
from acc.disentanglement import cross_probe, dci, mig, sap
from acc.eval_metric import EvalMetric
from acc.model_output import ModelOutput
from acc.tasks.base import (
    EvalOnlyTask,
    evaluation_mode,
    require_factors,
    require_output,
)

FIT_IMAGES = 10_000
DIGIT = "digit"


class DisentanglementTask(EvalOnlyTask):
    periodic: ClassVar[bool] = False
    reads_outputs: ClassVar[bool] = True  # the test codes: LATENT of the shared pass

    def __init__(
        self,
        name: str,
        dataset: Dataset,
        groups: tuple = (),
        factors: tuple[str, ...] = ("thickness", "slant"),
    ) -> None:
        super().__init__(name, dataset)
        require_factors(type(self).__name__, name, dataset, factors)
        self.groups, self.factors = tuple(groups), tuple(factors)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        fit = _first(self.dataset.train, FIT_IMAGES)
        z_fit, z_test = self.codes(model, fit), self.test_codes(model)
        f_fit, f_test = self.targets(fit), self.targets(self.dataset.test)
        scores = dci(z_fit, f_fit, z_test, f_test)
        metrics = {
            EvalMetric.MIG.value: mig(z_test, f_test)["mig"],
            EvalMetric.DCI_DISENTANGLEMENT.value: scores["disentanglement"],
            EvalMetric.DCI_COMPLETENESS.value: scores["completeness"],
            EvalMetric.DCI_INFORMATIVENESS.value: scores["informativeness"],
            EvalMetric.SAP.value: sap(z_test, {k: v for k, v in f_test.items() if k != DIGIT})[
                "sap"
            ],
        }
        # the model's own groups when none were given (the inspector on a level-3 checkpoint)
        groups = self.groups or tuple(getattr(model, "groups", ()))
        return metrics | self.probe_matrix(groups, z_fit, f_fit, z_test, f_test)

    def probe_matrix(self, groups, z_fit, f_fit, z_test, f_test) -> dict[str, float]:
        """The group-level cross-probe summary (each factor owned by the group of its name);
        nothing for a model without factor groups."""
        own = {k: k for k in f_fit if k in {g.name for g in groups}}
        if len(groups) < 2 or not own:
            return {}
        split = {g.name: (z_fit[:, g.start : g.end], z_test[:, g.start : g.end]) for g in groups}
        result = cross_probe(
            {g: v[0] for g, v in split.items()}, f_fit,
            {g: v[1] for g, v in split.items()}, f_test, own,
        )  # fmt: skip
        return {
            EvalMetric.FACTOR_INFORMATIVENESS.value: result["factor_informativeness"],
            EvalMetric.FACTOR_LEAKAGE.value: result["factor_leakage"],
        }

    def codes(self, model: nn.Module, split: Split, batch: int = 1000) -> np.ndarray:
        """Posterior means of the pooled factor vectors: [N, C] float64. The encoder alone
        where the model pools its posterior means itself (eval-mode LATENT is exactly
        ``factor_vectors(mu)``), else the model's LATENT from a full pass."""
        encoder_only = hasattr(model, "encode") and hasattr(model, "factor_vectors")
        out = []
        with evaluation_mode(model):
            for start in range(0, len(split), batch):
                images = split.images[start : start + batch]
                if encoder_only:
                    latent = model.factor_vectors(model.encode(images)[0])
                else:
                    latent = require_output(model(images), ModelOutput.LATENT, self)
                out.append(latent.double().cpu())
        return torch.cat(out).numpy()

    def test_codes(self, model: nn.Module) -> np.ndarray:
        """The test split's codes, from the shared pass's outputs when one is open."""
        if self._shared_outputs is None:
            return self.codes(model, self.dataset.test)
        latents = [
            require_output(out, ModelOutput.LATENT, self) for _, out in self.test_outputs(model)
        ]
        return torch.cat(latents).double().cpu().numpy()

    def targets(self, split: Split) -> dict[str, np.ndarray]:
        values = {DIGIT: split.labels.cpu().numpy()}
        return values | {f: split.factors[f].double().cpu().numpy() for f in self.factors}

    def describe(self) -> dict:
        return {**super().describe(), "factors": list(self.factors)}


def _first(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n], {k: v[:n] for k, v in split.factors.items()})
